"""Speed estimates for the claim: a worker's nearest bin, or the cluster's."""

import pytest
from django.utils import timezone

from stats import ema, selectors, services
from stats.models import SizeBin

from .factories import make_worker, outcome

pytestmark = pytest.mark.django_db


def test_a_worker_never_measured_at_a_size_is_estimated_from_its_nearest_bin():
    worker = make_worker()
    services.record_outcome(
        worker_id=worker.pk, outcome=outcome(size=4.0, seconds=1.0, prompt_tokens=0, completion_tokens=10)
    )
    estimate = selectors.estimates(worker_ids=[worker.pk], size=16.0, kind="text")[worker.pk]
    assert estimate == pytest.approx(0.1 * 4**ema.UP_EXPONENT)


def test_a_brand_new_worker_gets_the_clusters_estimate():
    worker = make_worker()
    SizeBin.objects.filter(worker=None, kind="text").delete()  # rolled back after the test
    SizeBin.objects.create(
        worker=None, kind="text", bin=ema.size_bin(4.0), value=0.07, count=3, updated_at=timezone.now()
    )
    assert selectors.estimates(worker_ids=[worker.pk], size=4.0, kind="text") == {worker.pk: 0.07}
