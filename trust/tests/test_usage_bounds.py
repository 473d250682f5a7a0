"""Usage Queenbee can stand behind: a worker's report is bounded by what it sent and what was asked."""

import httpx

from billing.tests.conftest import charges_of, sdk
from conftest import wait_for
from routing.models import Job
from trust import usage
from trust.models import TrustEvent
from workers.models import TrustState

from .conftest import HI, MODEL, liar, state_of

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Say something short."}]}


def test_a_report_within_bounds_is_billed_as_it_is():
    counted = usage.bounded(reported=(12, 4), request=REQUEST, text="a short honest answer")
    assert (counted.prompt_tokens, counted.completion_tokens, counted.corrected) == (12, 4, False)


def test_completion_tokens_beyond_the_delivered_text_are_replaced_by_queenbees_count():
    counted = usage.bounded(reported=(12, 1_000_000), request=REQUEST, text="a short honest answer")
    assert counted.corrected and counted.completion_tokens == len("a short honest answer") // 4


def test_completion_tokens_beyond_max_tokens_are_out_of_bounds():
    text = "word " * 100
    assert usage.bounded(reported=(5, 60), request={**REQUEST, "max_tokens": 50}, text=text).corrected
    assert usage.bounded(reported=(5, 60), request={**REQUEST, "max_completion_tokens": 50}, text=text).corrected
    assert not usage.bounded(reported=(5, 50), request={**REQUEST, "max_tokens": 50}, text=text).corrected
    # n choices may each use max_tokens.
    assert not usage.bounded(reported=(5, 100), request={**REQUEST, "max_tokens": 50}, text=text, choices=2).corrected


def test_prompt_tokens_beyond_the_size_of_the_request_are_out_of_bounds():
    assert usage.bounded(reported=(1_000_000, 4), request=REQUEST, text="a short honest answer").corrected
    assert not usage.bounded(reported=(usage.max_prompt_tokens(REQUEST), 4), request=REQUEST, text="a short honest answer").corrected


def test_an_image_allows_a_bounded_number_of_prompt_tokens():
    vision = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}]}
    assert not usage.bounded(reported=(1000, 1), request=vision, text="a cat").corrected
    assert usage.bounded(reported=(usage.TOKENS_PER_IMAGE * 2, 1), request=vision, text="a cat").corrected


def test_multibyte_text_may_have_a_token_per_byte():
    assert not usage.bounded(reported=(5, 9), request=REQUEST, text="日本語").corrected  # 9 UTF-8 bytes


def test_no_report_is_counted_by_queenbee_and_marked_estimated():
    counted = usage.bounded(reported=None, request=REQUEST, text="a short honest answer")
    assert counted.estimated and not counted.corrected


def test_an_inflated_report_is_billed_by_queenbees_count_and_counts_against_the_worker(queen, start_worker, make_account, lane):
    worker = start_worker(capabilities=["llama-infer", lane], script=liar("a short honest answer", prompt_tokens=1_000_000, completion_tokens=1_000_000))
    account, raw = make_account(credits=100_000)
    client = sdk(queen, raw)
    extra = {"gpu_filter": {"capabilities": [lane]}}
    client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)  # proof of work
    reply = client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    assert reply.usage.completion_tokens == len("a short honest answer") // 4
    job = wait_for(lambda: Job.objects.filter(public_id=reply.id).first(), what="job recorded")
    assert job.usage_corrected and job.completion_tokens < 10 and job.prompt_tokens < 10
    [charge] = wait_for(lambda: charges_of(account), what="charge")
    assert charge.amount == -2  # per request + a few tokens, not millions
    assert TrustEvent.objects.filter(worker__identity=worker.identity, kind="usage").count() == 2
    assert state_of(worker) == TrustState.QUARANTINED  # two violations: new → suspect → quarantined


def test_an_inflated_stream_usage_is_bounded_too(queen, start_worker, lane):
    from testkit.fake_worker import stream_chunks

    chunks = stream_chunks(["Hello", " there"])
    chunks[-1]["usage"] = {"prompt_tokens": 5, "completion_tokens": 999_999, "total_tokens": 1_000_004}
    start_worker(capabilities=["llama-infer", lane], script=lambda job: iter([*chunks, {}]))
    body = {"model": MODEL, "messages": HI, "stream": True, "stream_options": {"include_usage": True}, "gpu_filter": {"capabilities": [lane]}}
    with httpx.stream("POST", f"{queen.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer test-bypass-token"}, timeout=30) as response:
        text = response.read().decode()
    assert '"completion_tokens":2' in text and "999999" not in text


def doubt(completion="four words of text", prompt_tokens=5, completion_tokens=4, scored=4, truncated=False, request=None):
    return usage.verifier_counts_doubt(
        request=request or {"messages": [{"role": "user", "content": "hi"}]}, completion=completion,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, scored_tokens=scored, truncated=truncated,
    )


def test_a_verifiers_counts_that_agree_with_its_scores_and_the_text_are_billable():
    assert doubt() == ""
    assert doubt(completion_tokens=5000, scored=4096, completion="x" * 6000, truncated=True) == ""


def test_a_verifiers_counts_must_agree_with_the_tokens_it_scored():
    assert "scored 4" in doubt(completion_tokens=3)
    assert "scored 4" in doubt(completion_tokens=5)  # more than it scored, without truncating
    assert "scored 4096" in doubt(completion_tokens=10, scored=4096, truncated=True)


def test_a_verifiers_counts_must_fit_the_texts():
    long = "word " * 400  # 2,000 bytes: at least 62 tokens
    assert "cannot spell 2000 bytes" in doubt(completion=long, completion_tokens=10, scored=10)
    assert "cannot spell" in doubt(completion="hi", completion_tokens=40, scored=40)  # beyond a token per byte
    prompt = {"messages": [{"role": "user", "content": "a" * 3200}]}
    assert "prompt of 3200 bytes" in doubt(request=prompt, prompt_tokens=3)
    assert "prompt" in doubt(prompt_tokens=10_000)
