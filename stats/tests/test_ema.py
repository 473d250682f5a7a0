"""The arithmetic of stats, without a database."""

import random
from collections import Counter

import pytest

from stats import ema
from workers.choice import Candidate, rank


def test_the_first_sample_sets_the_value_and_later_ones_move_it_by_one_minus_alpha():
    value = ema.update(None, 2.0, alpha=0.8)
    assert value == 2.0
    assert ema.update(value, 1.0, alpha=0.8) == pytest.approx(1.8)


def test_prompt_tokens_weigh_less_than_completion_tokens():
    assert ema.weighted_tokens(prompt_tokens=100, completion_tokens=10, prompt_weight=0.1, completion_weight=1.0) == 20


@pytest.mark.parametrize(
    "size, bin",
    [(1.0, 0), (2.0, 2), (4.0, 4), (4.2, 4), (7.8, 6), (8.0, 6), (0.162, -5), (42.0, 11), (0.0, -13)],
)
def test_sizes_are_binned_by_half_doublings(size, bin):
    assert ema.size_bin(size) == bin


def test_a_bin_holds_sizes_within_a_factor_of_root_two():
    for bin in range(-6, 14):
        centre = ema.bin_size(bin)
        assert ema.size_bin(centre * 1.18) == bin
        assert ema.size_bin(centre / 1.18) == bin


def test_the_estimate_for_a_measured_bin_is_its_value():
    assert ema.estimate({4: 0.05}, 4.2) == 0.05


def test_it_interpolates_between_the_nearest_bins_on_each_side():
    bins = {2: 0.02, 6: 0.08, 12: 5.0}  # sizes 2, 8, 64
    # Size 4 sits halfway (in log size) between 2 and 8: the geometric mean.
    assert ema.estimate(bins, 4.0) == pytest.approx(0.04)


def test_it_extrapolates_up_pessimistically_and_down_modestly():
    bins = {4: 0.04}  # size 4
    assert ema.estimate(bins, 16.0) == pytest.approx(0.04 * 4**ema.UP_EXPONENT)
    assert ema.estimate(bins, 1.0) == pytest.approx(0.04 * 0.25**ema.DOWN_EXPONENT)
    # Up costs more than proportional, down saves less than proportional.
    assert ema.estimate(bins, 16.0) > 0.16 and ema.estimate(bins, 1.0) > 0.01


def test_it_uses_the_nearest_bin_not_the_largest():
    bins = {0: 0.01, 12: 9.0}  # sizes 1 and 64; the original would scale from 64
    only_low = ema.estimate({0: 0.01}, 0.5)
    assert ema.estimate(bins, 0.5) == pytest.approx(only_low)


def test_a_worker_with_no_bins_has_no_estimate():
    assert ema.estimate({}, 4.0) is None


def test_a_count_weighted_merge_keeps_the_mean_of_all_samples():
    assert ema.merge(None, 0, 3.0, 5) == (3.0, 5)
    value, count = ema.merge(1.0, 3, 2.0, 1)
    assert (value, count) == (pytest.approx(1.25), 4)


def test_the_skewed_pick_takes_the_best_of_three_most_of_the_time():
    rng = random.Random(1234)
    draws = Counter(ema.skewed_index(3, rng.random()) for _ in range(1000))
    assert draws[0] >= 700
    assert draws[1] > 30 and draws[2] > 30  # the others are still measured
    assert set(draws) == {0, 1, 2}


def test_the_skewed_pick_never_leaves_the_list():
    rng = random.Random(5)
    assert all(0 <= ema.skewed_index(n, rng.random()) < n for n in range(1, 70) for _ in range(50))
    assert ema.skewed_index(5, 0.999999) == 4


def test_original_bins_convert_through_the_size_they_stand_for():
    assert ema.original_bin(6.25) == 2  # the original's banker's rounding
    assert ema.original_bin(4.2) == 2
    assert ema.size_bin(ema.size_of_original_bin(2)) == 4
    assert ema.original_bin(ema.bin_size(ema.size_bin(ema.size_of_original_bin(3)))) == 3


# --- The choice --------------------------------------------------------------------------


def candidate(n: int, *, estimate: float | None, punished=False, proven=True, gpu=24000.0, model="m") -> Candidate:
    return Candidate(n, f"chan{n}", n, False, gpu, model, (), estimate=estimate, punished=punished, proven=proven)


def first_picks(candidates, *, draws=1000, seed=42, **kwargs) -> Counter:
    rng = random.Random(seed)
    return Counter(
        rank(candidates, gpu_needed_mib=4000, model="m", rng=rng, **kwargs)[0].worker_id for _ in range(draws)
    )


def test_the_fastest_of_three_is_picked_at_least_70_percent_of_the_time():
    picks = first_picks([candidate(1, estimate=0.09), candidate(2, estimate=0.01), candidate(3, estimate=0.05)])
    assert picks[2] >= 700
    assert picks[1] > 0 and picks[3] > 0


def test_a_punished_worker_is_ranked_last_and_never_first_while_others_fit():
    picks = first_picks([candidate(1, estimate=0.001, punished=True), candidate(2, estimate=0.5)])
    assert picks == {2: 1000}
    assert rank([candidate(1, estimate=0.001, punished=True)], gpu_needed_mib=4000, model="m")[0].worker_id == 1


def test_an_unproven_worker_gets_only_its_small_share_first():
    picks = first_picks([candidate(1, estimate=0.05), candidate(2, estimate=None, proven=False)], unproven_share=0.1)
    assert 60 <= picks[2] <= 140
    assert first_picks([candidate(2, estimate=None, proven=False)], unproven_share=0.0) == {2: 1000}


def test_a_worker_that_fits_comfortably_goes_before_a_faster_one_that_barely_fits():
    picks = first_picks([candidate(1, estimate=0.01, gpu=3600), candidate(2, estimate=0.2)])
    assert picks == {2: 1000}


def test_a_worker_with_the_model_loaded_wins_unless_another_is_clearly_faster():
    loaded = candidate(1, estimate=0.02)
    cold = Candidate(2, "chan2", 2, False, 24000, "other", (), estimate=0.015)
    assert first_picks([loaded, cold]).most_common(1)[0][0] == 1
    much_faster = Candidate(2, "chan2", 2, False, 24000, "other", (), estimate=0.002)
    assert first_picks([loaded, much_faster]).most_common(1)[0][0] == 2


def test_the_ranking_keeps_every_candidate_once():
    candidates = [
        candidate(i, estimate=random.Random(i).random(), punished=i % 5 == 0, proven=i % 3 > 0) for i in range(40)
    ]
    ranked = rank(candidates, gpu_needed_mib=4000, model="m", unproven_share=0.1, rng=random.Random(3))
    assert sorted(c.worker_id for c in ranked) == list(range(40))
    assert all(c.punished for c in ranked[-8:])
