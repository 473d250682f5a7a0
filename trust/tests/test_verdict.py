"""The verdict on a verifier's scores (trust/verdict.py): honest samples pass, text from elsewhere fails."""

from trust.verdict import decide

LIKELY, SECOND, UNLIKELY = [-0.3, 0, 0.0, -0.3], [-1.2, 1, 0.6, -0.5], [-13.0, 900, 0.999, -0.2]


def test_greedy_text_that_is_the_models_choice_passes():
    assert decide(request={"temperature": 0}, tokens=[LIKELY] * 20, end=LIKELY, finish_reason="stop").passed


def test_greedy_text_may_differ_by_near_ties():
    near_tie = [-0.8, 1, 0.45, -0.6]
    assert decide(request={"temperature": 0}, tokens=[LIKELY] * 18 + [near_tie] * 2, end=None, finish_reason="length").passed


def test_greedy_text_that_is_not_the_models_choice_fails():
    off = [-2.5, 1, 0.8, -0.3]  # a second choice well below the first: not what greedy decoding picks
    verdict = decide(request={"temperature": 0}, tokens=[LIKELY] * 10 + [off] * 10, end=None, finish_reason="stop")
    assert not verdict.passed and verdict.implausible == 10


def test_sampled_text_within_top_k_and_min_p_passes():
    assert decide(request={"temperature": 0.9}, tokens=[LIKELY, SECOND] * 10, end=LIKELY, finish_reason="stop").passed


def test_random_words_fail():
    verdict = decide(request={}, tokens=[UNLIKELY] * 6 + [LIKELY] * 2, end=LIKELY, finish_reason="stop")
    assert not verdict.passed and "not what the model would sample" in verdict.reason


def test_one_odd_token_never_fails_an_answer():
    assert decide(request={}, tokens=[UNLIKELY], end=None, finish_reason="stop").passed
    assert decide(request={}, tokens=[LIKELY] * 9 + [UNLIKELY], end=None, finish_reason="stop").passed


def test_text_far_below_the_models_choice_fails_even_with_a_loose_support():
    loose = {"top_k": 0, "min_p": 0, "top_p": 1.0, "temperature": 1.0}
    far = [-9.0, 300, 0.9, -0.5]
    assert not decide(request=loose, tokens=[far] * 10, end=None, finish_reason="length").passed
    assert decide(request=loose, tokens=[SECOND] * 10, end=None, finish_reason="length").passed


def test_an_answer_cut_short_but_marked_stop_fails():
    cut = [-9.0, 40, 0.99, -0.1]  # the model would go on: ending here is implausible
    verdict = decide(request={}, tokens=[LIKELY] * 10, end=cut, finish_reason="stop")
    assert not verdict.passed and "finished" in verdict.reason
    assert decide(request={}, tokens=[LIKELY] * 10, end=cut, finish_reason="length").passed
    assert decide(request={"stop": ["\n"]}, tokens=[LIKELY] * 10, end=cut, finish_reason="stop").passed


def test_constrained_sampling_is_counted_not_judged():
    verdict = decide(request={"response_format": {"type": "json_object"}}, tokens=[UNLIKELY] * 10, end=None, finish_reason="stop")
    assert verdict.passed and not verdict.judged


def test_a_penalized_greedy_answer_is_judged_by_the_support_not_the_greedy_gap():
    # repeat_penalty 1.1 put honest greedy tokens up to 2.3 nats below the raw best (bench/RESULTS.md).
    off_best = [[-2.6, 3, 0.6, -0.3]] * 5 + [[-0.3, 0, 0.0, -0.3]] * 5
    assert not decide(request={"temperature": 0}, tokens=off_best, end=None, finish_reason="length").passed
    assert decide(request={"temperature": 0, "repeat_penalty": 1.1}, tokens=off_best, end=None, finish_reason="length").passed
    # Still refuted when the tokens are outside any sampler's support.
    far = [[-14.0, 900, 0.999, -0.3]] * 10
    assert not decide(request={"temperature": 0, "presence_penalty": 0.5}, tokens=far, end=None, finish_reason="length").passed


def test_penalties_too_strong_to_reason_about_are_counted_not_judged():
    far = [[-14.0, 900, 0.999, -0.3]] * 10
    verdict = decide(request={"temperature": 0, "presence_penalty": 2.0}, tokens=far, end=None, finish_reason="stop")
    assert verdict.passed and not verdict.judged


def test_when_the_prompt_may_differ_greedy_answers_are_judged_by_the_support_and_not_their_end():
    off_best = [[-3.3, 2, 0.9, -0.3]] * 6
    cut = [-9.0, 30, 0.99, -0.3]
    assert not decide(request={"temperature": 0}, tokens=off_best, end=cut, finish_reason="stop").passed
    assert decide(request={"temperature": 0}, tokens=off_best, end=cut, finish_reason="stop", same_prompt=False).passed
    random_words = [[-13.0, 900, 0.999, -0.2]] * 6
    assert not decide(request={"temperature": 0}, tokens=random_words, end=None, finish_reason="stop", same_prompt=False).passed
