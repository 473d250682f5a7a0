"""Prices: usage to credits (pure arithmetic)."""

from billing.prices import Rates, cost, worker_share


def test_tokens_are_priced_per_thousand_and_rounded_up():
    rates = Rates(per_request=1, per_1k_prompt_tokens=1, per_1k_completion_tokens=4)
    assert cost(rates, prompt_tokens=7, completion_tokens=4, images=0) == 2
    assert cost(rates, prompt_tokens=1000, completion_tokens=1000, images=0) == 6


def test_images_are_priced_each():
    assert cost(Rates(per_image=20), prompt_tokens=0, completion_tokens=0, images=3) == 60


def test_a_worker_share_never_exceeds_the_charge():
    assert worker_share(2, 0.75) == 1
    assert worker_share(0, 0.75) == 0
    assert worker_share(100, 1.0) == 100
