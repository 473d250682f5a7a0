"""The claim ranks candidates by their stats, at a fixed cost in queries."""

import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from stats import ema, selectors, services
from stats.models import SizeBin
from stats.services import Failure
from workers.services import Need, claim_connection

from .factories import live_process, make_connection, make_worker, outcome

pytestmark = pytest.mark.django_db


def fleet(n: int, tag: str) -> list:
    process = live_process()
    return [make_connection(worker=make_worker(), process=process, capabilities=["llama-infer", tag]) for _ in range(n)]


def claim(tag: str):
    return claim_connection(
        need=Need(size=4.2, capabilities=("llama-infer", tag)), job_id=os.urandom(8).hex(), reply_channel="test.reply!x"
    )


@pytest.mark.parametrize("candidates", [2, 40])
def test_claiming_costs_the_same_queries_for_two_candidates_or_forty(candidates):
    tag = f"q-{os.urandom(4).hex()}"
    for c in fleet(candidates, tag):
        services.record_outcome(worker_id=c.worker_id, outcome=outcome())
    with CaptureQueriesContext(connection) as queries:
        assert claim(tag) is not None
    # candidates with their punishment and proof; every bin of theirs and the cluster's; the claim
    assert len(queries) == 3, [q["sql"] for q in queries]


def test_a_punished_worker_is_claimed_only_when_nothing_else_fits():
    tag = f"p-{os.urandom(4).hex()}"
    fast, slow = fleet(2, tag)
    services.record_outcome(worker_id=fast.worker_id, outcome=outcome(seconds=0.1))
    services.record_outcome(worker_id=slow.worker_id, outcome=outcome(seconds=5.0))
    services.punish(worker_id=fast.worker_id, reason=Failure.GARBAGE)
    assert claim(tag).worker_id == slow.worker_id
    # The healthy worker is busy, not gone: the request waits in line for it.
    assert claim(tag) is None
    type(slow).objects.filter(pk=slow.pk).delete()  # now nothing else fits
    assert claim(tag).worker_id == fast.worker_id


def test_a_fast_worker_is_claimed_most_of_the_time():
    tag = f"f-{os.urandom(4).hex()}"
    fast, slow, slower = fleet(3, tag)
    for c, seconds in ((fast, 0.1), (slow, 1.0), (slower, 2.0)):
        services.record_outcome(worker_id=c.worker_id, outcome=outcome(seconds=seconds))
    picks = []
    for _ in range(200):
        won = claim(tag)
        picks.append(won.worker_id)
        type(fast).objects.filter(pk=won.connection_id).update(state="free", job_id="")
    assert picks.count(fast.worker_id) >= 140


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
