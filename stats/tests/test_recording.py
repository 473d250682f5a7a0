"""What a finished job does to its worker's stats."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from stats import ema, services
from stats.models import SizeBin, WorkerStats
from stats.services import Failure
from workers.services import count_frames

from .factories import live_process, make_connection, make_worker, outcome

pytestmark = pytest.mark.django_db


def bin_of(worker, size=4.2, kind="text") -> SizeBin:
    return SizeBin.objects.get(worker=worker, kind=kind, bin=ema.size_bin(size))


def test_a_success_counts_the_job_and_seeds_its_bin_with_weighted_seconds_per_token():
    worker = make_worker()
    services.record_outcome(worker_id=worker.pk, outcome=outcome(seconds=2.0, prompt_tokens=100, completion_tokens=10))
    stats = WorkerStats.objects.get(worker=worker)
    assert (stats.inferences, stats.failures) == (1, 0)
    row = bin_of(worker)
    # 100 prompt tokens weigh 0.1 each: 2 s over 20 weighted tokens.
    assert (row.value, row.count) == (pytest.approx(0.1), 1)


def test_later_samples_follow_the_ema_with_alpha():
    worker = make_worker()
    expected = None
    for seconds in (1.0, 3.0, 2.0, 0.5):
        services.record_outcome(
            worker_id=worker.pk, outcome=outcome(seconds=seconds, prompt_tokens=0, completion_tokens=10)
        )
        expected = ema.update(expected, seconds / 10, alpha=0.8)
    assert bin_of(worker).value == pytest.approx(expected)
    assert bin_of(worker).count == 4


def test_every_sample_also_feeds_the_clusters_bin():
    before = (
        SizeBin.objects.filter(worker=None, kind="text", bin=ema.size_bin(4.2)).values_list("count", flat=True).first()
        or 0
    )
    services.record_outcome(worker_id=make_worker().pk, outcome=outcome())
    assert SizeBin.objects.get(worker=None, kind="text", bin=ema.size_bin(4.2)).count == before + 1


def test_the_first_success_is_the_proof_of_work_and_only_the_first():
    worker = make_worker()
    first = services.record_outcome(worker_id=worker.pk, outcome=outcome(public_id="chatcmpl-proof"))
    second = services.record_outcome(worker_id=worker.pk, outcome=outcome())
    assert (first.proof_of_work, second.proof_of_work) == (True, False)
    stats = WorkerStats.objects.get(worker=worker)
    assert stats.proven_at is not None and stats.proof_job == "chatcmpl-proof"


def test_a_failure_is_not_proof_of_work():
    worker = make_worker()
    services.record_outcome(worker_id=worker.pk, outcome=outcome(succeeded=False, failure=Failure.ERROR))
    assert WorkerStats.objects.get(worker=worker).proven_at is None


def test_a_failure_punishes_a_worker_with_no_stats_yet():
    worker = make_worker()
    recorded = services.record_outcome(worker_id=worker.pk, outcome=outcome(succeeded=False, failure=Failure.TIMEOUT))
    stats = WorkerStats.objects.get(worker=worker)
    assert recorded.punished
    assert stats.failures == 1 and stats.punish_reason == "timeout"
    assert stats.punished_until > timezone.now() + timedelta(seconds=800)


def test_a_failure_the_worker_is_not_to_blame_for_only_counts():
    worker = make_worker()
    services.record_outcome(worker_id=worker.pk, outcome=outcome(succeeded=False, failure=""))
    stats = WorkerStats.objects.get(worker=worker)
    assert stats.failures == 1 and stats.punished_until is None


def test_busy_is_punished_briefly_and_never_shortens_a_longer_punishment():
    worker = make_worker()
    services.punish(worker_id=worker.pk, reason=Failure.BUSY)
    until = WorkerStats.objects.get(worker=worker).punished_until
    assert timezone.now() + timedelta(seconds=20) < until < timezone.now() + timedelta(seconds=31)
    services.punish(worker_id=worker.pk, reason=Failure.ERROR)
    long = WorkerStats.objects.get(worker=worker).punished_until
    services.punish(worker_id=worker.pk, reason=Failure.BUSY)
    assert WorkerStats.objects.get(worker=worker).punished_until == long


def test_a_success_lifts_a_punishment_given_before_it_started_but_not_one_given_during_it():
    worker = make_worker()
    services.punish(worker_id=worker.pk, reason=Failure.ERROR, now=timezone.now() - timedelta(seconds=10))
    services.record_outcome(worker_id=worker.pk, outcome=outcome(started_at=timezone.now() - timedelta(seconds=5)))
    assert WorkerStats.objects.get(worker=worker).punished_until is None
    started = timezone.now() - timedelta(seconds=1)
    services.punish(worker_id=worker.pk, reason=Failure.ERROR)  # another socket failed meanwhile
    services.record_outcome(worker_id=worker.pk, outcome=outcome(started_at=started))
    assert WorkerStats.objects.get(worker=worker).punished_until is not None


@override_settings(STATS_SLOW_JOB_SECONDS=10, STATS_SLOW_SECONDS_PER_TOKEN=1.0)
def test_a_very_slow_job_on_a_loaded_model_is_punished_but_a_long_brisk_one_is_not():
    slow, brisk, loading = make_worker(), make_worker(), make_worker()
    assert services.record_outcome(
        worker_id=slow.pk, outcome=outcome(seconds=30, prompt_tokens=0, completion_tokens=20)
    ).punished
    assert not services.record_outcome(
        worker_id=brisk.pk, outcome=outcome(seconds=30, prompt_tokens=0, completion_tokens=300)
    ).punished
    assert not services.record_outcome(
        worker_id=loading.pk, outcome=outcome(seconds=30, completion_tokens=20, already_loaded=False)
    ).punished
    assert WorkerStats.objects.get(worker=slow).punish_reason == "slow"


def test_a_job_with_no_tokens_is_counted_but_measures_nothing():
    worker = make_worker()
    services.record_outcome(worker_id=worker.pk, outcome=outcome(prompt_tokens=0, completion_tokens=0))
    assert WorkerStats.objects.get(worker=worker).inferences == 1
    assert not SizeBin.objects.filter(worker=worker).exists()


def test_images_are_kept_under_their_own_key_in_seconds_per_image():
    worker = make_worker()
    services.record_outcome(
        worker_id=worker.pk,
        outcome=outcome(kind="image", size=25, seconds=12.0, images=2, prompt_tokens=0, completion_tokens=0),
    )
    row = SizeBin.objects.get(worker=worker)
    assert (row.kind, row.value) == ("image", pytest.approx(6.0))


def test_embeddings_count_as_inferences_but_are_not_sampled():
    worker = make_worker()
    services.record_outcome(worker_id=worker.pk, outcome=outcome(kind="embeddings", size=1))
    assert WorkerStats.objects.get(worker=worker).inferences == 1
    assert not SizeBin.objects.filter(worker=worker).exists()


def test_streams_keep_an_ema_of_the_time_to_first_token():
    worker = make_worker()
    services.record_outcome(worker_id=worker.pk, outcome=outcome(stream=True, first_token_seconds=0.5))
    services.record_outcome(worker_id=worker.pk, outcome=outcome(stream=True, first_token_seconds=1.0))
    services.record_outcome(worker_id=worker.pk, outcome=outcome(stream=False, first_token_seconds=9.0))
    stats = WorkerStats.objects.get(worker=worker)
    assert (stats.ttft_seconds, stats.ttft_count) == (pytest.approx(0.6), 2)


def test_a_garbage_frame_punishes_the_worker_behind_the_socket_and_a_stray_one_does_not():
    process = live_process()
    garbage, stray = make_worker(), make_worker()
    for worker, counted in ((garbage, {"bad": 1}), (stray, {"stray": 1})):
        connection = make_connection(worker=worker, process=process, capabilities=["llama-infer"])
        count_frames(connection_id=connection.pk, worker_id=worker.pk, **counted)
    assert WorkerStats.objects.get(worker=garbage).punish_reason == "garbage"
    assert not WorkerStats.objects.filter(worker=stray).exists()
