"""A request goes only to a worker whose announced context window holds it.

Workers announce `context_length` in their connect message; routing counts a
lower bound of the request's prompt tokens
(routing/context.py). A worker that announced nothing is assumed to fit. When
every worker that could otherwise serve the request has a window known to be
too small, the answer is OpenAI's 400 `context_length_exceeded`.
"""

import concurrent.futures

import openai
import pytest

from testkit.fake_worker import Delay, chat_reply

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
# 8,000 words: at least 6,000 tokens by Queenbee's count (about 8,000 in fact).
LONG = "word " * 8000
SMALL, BIG = 2048, 32768


def chat(content: str = "hi", **fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}


def slow(job):
    yield Delay(0.5)
    yield chat_reply()


def test_a_long_prompt_goes_to_the_worker_whose_window_holds_it(start_worker, http):
    small = start_worker(context_length=SMALL)
    big = start_worker(context_length=BIG)
    for _ in range(3):
        response = http.post("/v1/chat/completions", json=chat(LONG))
        assert response.status_code == 200, response.text[:300]
    assert (len(small.jobs), len(big.jobs)) == (0, 3)


def test_a_short_prompt_may_go_to_a_small_window(start_worker, http):
    small = start_worker(context_length=SMALL)
    assert http.post("/v1/chat/completions", json=chat("hi")).status_code == 200
    assert len(small.jobs) == 1


def test_a_long_prompt_waits_for_the_busy_worker_that_holds_it(start_worker, http):
    small = start_worker(context_length=SMALL)
    big = start_worker(context_length=BIG, script=slow)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: http.post("/v1/chat/completions", json=chat(LONG)), range(2)))
    assert [a.status_code for a in answers] == [200, 200], answers[0].text[:300]
    assert (len(small.jobs), len(big.jobs)) == (0, 2)
    assert big.overlaps == 0


def test_no_window_large_enough_is_a_400_naming_the_sizes(start_worker, http):
    small = start_worker(context_length=SMALL)
    medium = start_worker(context_length=4096)
    response = http.post("/v1/chat/completions", json=chat(LONG))
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("context_length_exceeded", "messages", "invalid_request_error")
    assert "at least 6000 tokens" in error["message"] and "4096 tokens" in error["message"]
    assert small.jobs == medium.jobs == []


def test_the_official_sdk_sees_the_400_as_a_bad_request(start_worker, client):
    start_worker(context_length=SMALL)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": LONG}])
    assert raised.value.code == "context_length_exceeded"


def test_a_worker_that_announced_no_window_is_assumed_to_hold_it(start_worker, http):
    small = start_worker(context_length=SMALL)
    original = start_worker()  # sends no context_length, as the original worker
    assert "context_length" not in original.message()
    for _ in range(2):
        assert http.post("/v1/chat/completions", json=chat(LONG)).status_code == 200
    assert (len(small.jobs), len(original.jobs)) == (0, 2)


def test_max_tokens_beyond_the_window_is_served_not_refused(start_worker, http):
    """llama.cpp cuts a completion where the window ends: max_tokens is an upper bound, not a need."""
    small = start_worker(context_length=SMALL)
    for fields in ({"max_tokens": 4000}, {"max_completion_tokens": 4000}):
        assert http.post("/v1/chat/completions", json=chat("hi", **fields)).status_code == 200
    assert len(small.jobs) == 2


def test_a_completions_prompt_too_long_names_the_prompt(start_worker, http):
    start_worker(context_length=SMALL)
    response = http.post("/v1/completions", json={"model": MODEL, "prompt": LONG})
    assert response.status_code == 400, response.text[:300]
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("context_length_exceeded", "prompt")


def test_a_responses_input_too_long_names_the_input(start_worker, http):
    start_worker(context_length=SMALL)
    response = http.post("/v1/responses", json={"model": MODEL, "input": LONG})
    assert response.status_code == 400, response.text[:300]
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("context_length_exceeded", "input")


def test_a_missing_feature_is_named_before_the_length(start_worker, http):
    start_worker(context_length=SMALL)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    response = http.post("/v1/chat/completions", json=chat(LONG, tools=[tool]))
    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("unsupported_feature", "tools")


def test_a_worker_claiming_a_window_it_lacks_refuses_and_another_serves(start_worker, http):
    refusal = {"error": "Requested tokens (8000) exceed context window of 4096", "error_type": "ValueError"}
    liar = start_worker(context_length=1_000_000, script=lambda job: iter([refusal]))
    honest = start_worker(context_length=BIG)
    for _ in range(2):
        assert http.post("/v1/chat/completions", json=chat(LONG)).status_code == 200
    assert len(honest.jobs) == 2 and len(liar.jobs) <= 2


def test_the_public_worker_list_shows_each_window(start_worker, http):
    start_worker(context_length=SMALL, capabilities=["llama-infer", "ctx-listed"])
    start_worker(capabilities=["llama-infer", "ctx-listed"])
    listed = [w["context_length"] for w in http.get("/worker/detail").json() if "ctx-listed" in w["capabilities"]]
    assert sorted(listed) == [0, SMALL]
