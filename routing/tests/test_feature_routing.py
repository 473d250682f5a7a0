"""A request that needs a feature goes only to workers that announced it.

When no worker that could otherwise serve it has the feature, the refusal is a
400 naming the feature and the field (routing/features.py), never a silent 200
from a worker that ignored the field.
"""

import openai
import pytest

from routing.services import WorkerErrorFrame, failure_of
from testkit.fake_worker import chat_reply

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def chat(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


def two_choices(job):
    reply = chat_reply("one")
    reply["choices"].append({"index": 1, "message": {"role": "assistant", "content": "two"}, "finish_reason": "stop"})
    yield reply


@pytest.mark.parametrize(
    "fields, feature",
    [
        ({"tools": [WEATHER]}, "tools"),
        ({"tools": [WEATHER], "tool_choice": "none"}, "tools"),
        ({"response_format": {"type": "json_object"}}, "json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}}, "json_schema"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, IMAGE]}]}, "vision"),
    ],
)
def test_it_sends_a_request_only_to_a_worker_with_the_feature_it_needs(start_worker, http, fields, feature):
    plain = start_worker()
    able = start_worker(features=[feature], script=two_choices) if feature == "n" else start_worker(features=[feature])
    for _ in range(3):
        response = http.post("/v1/chat/completions", json=chat(**fields))
        assert response.status_code == 200, response.text[:300]
    assert (len(plain.jobs), len(able.jobs)) == (0, 3)


@pytest.mark.parametrize(
    "fields, feature, param",
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tools", "tools"),
        ({"response_format": {"type": "json_object"}}, "json_schema", "response_format"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs", "logprobs"),
        ({"n": 3}, "n", "n"),
        ({"messages": [{"role": "user", "content": [IMAGE]}]}, "vision", "messages"),
    ],
)
def test_a_feature_no_worker_has_is_a_400_naming_it_and_its_field(start_worker, http, fields, feature, param):
    worker = start_worker(features=["verify"])
    response = http.post("/v1/chat/completions", json=chat(**fields))
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, "unsupported_feature", "invalid_request_error")
    assert f"`{feature}`" in error["message"] and f"`{param}`" in error["message"]
    assert worker.jobs == []


def test_the_legacy_completions_logprobs_count_needs_the_feature_too(start_worker, http):
    start_worker()
    response = http.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "logprobs": 0})
    assert response.status_code == 400 and response.json()["error"]["param"] == "logprobs"


def test_it_names_the_feature_no_worker_has_when_a_request_needs_several(start_worker, http):
    start_worker(features=["tools"])
    response = http.post("/v1/chat/completions", json=chat(tools=[WEATHER], logprobs=True))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logprobs"


def test_a_request_no_worker_could_serve_even_without_its_feature_stays_a_503(start_worker, http):
    start_worker(features=["tools"], gpu_memory_mib=1000, ram_bytes=2_000_000_000)
    response = http.post("/v1/chat/completions", json=chat(tools=[WEATHER], logprobs=True))
    assert response.status_code == 503, response.text[:300]
    assert response.json()["error"]["code"] == "no_worker_fits"


def test_an_original_worker_without_features_serves_plain_requests_only(start_worker, http):
    original = start_worker(version="0.3.1")  # sends no `features` field at all
    assert "features" not in original.message()
    assert http.post("/v1/chat/completions", json=chat(seed=7, stop=["\n"], max_completion_tokens=5)).status_code == 200
    assert http.post("/v1/chat/completions", json=chat(response_format={"type": "json_object"})).status_code == 400
    assert len(original.jobs) == 1


def test_max_completion_tokens_reaches_an_original_worker_under_its_older_name_too(start_worker, http):
    original = start_worker()
    assert http.post("/v1/chat/completions", json=chat(max_completion_tokens=5)).status_code == 200
    sent = original.jobs[0]["openai_req"]
    assert (sent["max_completion_tokens"], sent["max_tokens"]) == (5, 5)


def test_several_choices_come_back_with_their_indexes(start_worker, client):
    start_worker(features=["n"], script=two_choices)
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
    assert [(c.index, c.message.content) for c in reply.choices] == [(0, "one"), (1, "two")]


@pytest.mark.parametrize(
    "error",
    [
        "response_format.json_schema.schema is not a JSON Schema this worker can enforce: Unrecognized schema",
        "Requested tokens (900) exceed context window of 512",
    ],
)
def test_a_request_the_worker_refuses_as_wrong_or_too_long_is_not_its_fault(error):
    assert failure_of(WorkerErrorFrame(error)) == ""


def test_a_schema_the_worker_cannot_enforce_is_a_400_naming_the_field(start_worker, client):
    refusal = {"error": "response_format.json_schema.schema is not a JSON Schema this worker can enforce: Unrecognized schema", "error_type": "BadGrammar"}
    worker = start_worker(features=["json_schema"], script=lambda job: iter([refusal]))
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "frobnicate"}}}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], response_format=schema, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert raised.value.body["param"] == "response_format.json_schema.schema"
    assert len(worker.jobs) == 1
