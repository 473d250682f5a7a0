"""Hostile API requests: each gets a 4xx in OpenAI's envelope, naming the field."""

import pytest

from routing.serializers import MAX_MESSAGES

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


def chat(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


def assert_error(response, status: int, *, param=None) -> dict:
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    return error


def test_an_oversized_body_is_a_413(http):
    body = chat(messages=[{"role": "user", "content": "x" * (9 * 1024 * 1024)}])
    error = assert_error(http.post("/v1/chat/completions", json=body), 413)
    assert error["code"] == "request_too_large"


def test_thousands_of_messages_are_refused_past_the_limit(http):
    messages = [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)
    assert_error(http.post("/v1/chat/completions", json=chat(messages=messages)), 400, param="messages")


def test_thousands_of_messages_within_the_limit_are_served(start_worker, http):
    worker = start_worker()
    messages = [{"role": "user", "content": "hi"}] * 4000
    response = http.post("/v1/chat/completions", json=chat(messages=messages, gpu_filter={"pubkey": worker.pubkey}))
    assert response.status_code == 200, response.text[:300]
    assert len(worker.jobs[0]["openai_req"]["messages"]) == 4000


@pytest.mark.parametrize("value", [10**12, 0, -1, "many", 1.5])
def test_absurd_max_tokens_is_refused(http, value):
    assert_error(http.post("/v1/chat/completions", json=chat(max_tokens=value)), 400, param="max_tokens")


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/chat/completions", chat(stream="maybe"), "stream"),
        ("/v1/chat/completions", chat(messages=["hi"]), "messages.0"),
        ("/v1/chat/completions", chat(stop=[1, 2]), "stop"),
        ("/v1/chat/completions", chat(top_p=7), "top_p"),
        ("/v1/chat/completions", chat(gpu_filter={"capabilities": "sdxl"}), "gpu_filter.capabilities"),
        ("/v1/chat/completions", chat(timeout="soon"), "timeout"),
        ("/v1/chat/completions", chat(model=["a", "b"]), "model"),
        ("/v1/completions", {"model": MODEL, "prompt": 5}, "prompt"),
        ("/v1/completions", {"model": MODEL, "prompt": ["ok", 5]}, "prompt"),
        ("/v1/embeddings", {"model": MODEL, "input": {"text": "hi"}}, "input"),
        ("/v1/embeddings", {"model": MODEL, "input": "hi", "encoding_format": "hex"}, "encoding_format"),
        ("/v1/images/generations", {"prompt": "a bee", "n": "two"}, "n"),
        ("/v1/images/generations", {"prompt": "a bee", "size": "huge"}, "size"),
    ],
)
def test_wrong_types_are_400s_naming_the_field(http, path, body, param):
    error = assert_error(http.post(path, json=body), 400, param=param)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"a string"', b"null", b"{" * 100_000])
def test_a_body_that_is_not_an_object_is_a_400(http, body):
    assert_error(http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}), 400)


def test_a_body_that_is_not_json_is_a_415(http):
    assert_error(http.post("/v1/chat/completions", content=b"model=x", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
