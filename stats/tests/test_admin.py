"""The stats pages of the admin render for an operator."""

import pytest

from stats import ema, services
from stats.services import Failure

from .factories import make_worker, outcome

pytestmark = pytest.mark.django_db


def test_the_list_and_a_workers_page_show_its_bins_side_by_side(admin_client):
    worker = make_worker(capabilities=["llama-infer", "sdxl"], gpu_count=2)
    services.record_outcome(
        worker_id=worker.pk, outcome=outcome(size=4.0, seconds=1.0, prompt_tokens=0, completion_tokens=10)
    )
    services.record_outcome(
        worker_id=worker.pk, outcome=outcome(size=16.0, seconds=4.0, prompt_tokens=0, completion_tokens=10)
    )
    services.record_outcome(worker_id=worker.pk, outcome=outcome(kind="image", size=25, seconds=8.0, images=1))
    services.punish(worker_id=worker.pk, reason=Failure.GARBAGE)

    listing = admin_client.get("/admin/stats/workerstats/", {"capability": "sdxl", "punished": "yes"})
    assert listing.status_code == 200
    assert worker.short_name in listing.text and "garbage until" in listing.text

    page = admin_client.get(f"/admin/stats/workerstats/{worker.pk}/change/")
    assert page.status_code == 200
    for label in ("size 4", "size 16", "image", "0.1 s/token", "0.4 s/token", "8 s/image"):
        assert label in page.text
    assert page.text.index("size 4") < page.text.index("size 16") < page.text.index("image</th>")
    assert ema.size_bin(16.0) == 8


def test_the_list_can_be_searched_by_capability(admin_client):
    worker = make_worker(capabilities=["llama-infer", "rare-cap-xyz"])
    services.record_outcome(worker_id=worker.pk, outcome=outcome())
    other = make_worker(capabilities=["llama-infer"])
    services.record_outcome(worker_id=other.pk, outcome=outcome())
    page = admin_client.get("/admin/stats/workerstats/", {"q": "rare-cap-xyz"})
    assert worker.short_name in page.text and other.short_name not in page.text


def test_lifting_a_punishment_from_the_admin(admin_client):
    worker = make_worker()
    services.punish(worker_id=worker.pk, reason=Failure.ERROR)
    admin_client.post("/admin/stats/workerstats/", {"action": "lift_punishment", "_selected_action": [worker.pk]})
    assert worker.stats.__class__.objects.get(pk=worker.pk).punished_until is None
