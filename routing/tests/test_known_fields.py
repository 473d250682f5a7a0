"""Fields Queenbee knows are checked with OpenAI's types and ranges: a bad one is a 400 naming it.

Never a silent 200 that ignored what the caller asked for.
"""

import pytest

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def chat(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"logprobs": "true"}, "logprobs"),
        ({"logprobs": 1}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": "5"}, "top_logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": False, "top_logprobs": 3}, "top_logprobs"),
        ({"n": 0}, "n"),
        ({"n": "one"}, "n"),
        ({"n": 129}, "n"),
        ({"seed": "42"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"stop": 4}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ["a", None]}, "stop"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_completion_tokens": "lots"}, "max_completion_tokens"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {}}, "response_format.type"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "response_format.json_schema.name"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}}}, "response_format.json_schema.name"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}, "response_format.json_schema.schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": "{}"}}}, "response_format.json_schema.schema"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": ["get_weather"]}, "tools.0"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools.0.type"),
        ({"tools": [{"type": "function"}]}, "tools.0.function"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools.0.function.name"),
        ({"tools": [{"type": "function", "function": {"name": 7}}]}, "tools.0.function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "tools.0.function.parameters"),
        ({"tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "tool_choice"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"store": "false"}, "store"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"service_tier": ["auto"]}, "service_tier"),
        ({"modalities": "text"}, "modalities"),
        ({"modalities": [1]}, "modalities.0"),
        ({"user": 12}, "user"),
    ],
)
def test_a_bad_known_chat_field_is_a_400_naming_it(http, fields, param):
    response = http.post("/v1/chat/completions", json=chat(**fields))
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    assert error["message"].startswith(f"{param}: ")


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/completions", {"model": MODEL, "prompt": "hi", "logprobs": True}, "logprobs"),
        ("/v1/completions", {"model": MODEL, "prompt": "hi", "logprobs": 6}, "logprobs"),
        ("/v1/completions", {"model": MODEL, "prompt": "hi", "suffix": 1}, "suffix"),
        ("/v1/completions", {"model": MODEL, "prompt": "hi", "n": 0}, "n"),
        ("/v1/embeddings", {"model": MODEL, "input": "hi", "dimensions": "3"}, "dimensions"),
        ("/v1/embeddings", {"model": MODEL, "input": "hi", "user": ["u"]}, "user"),
    ],
)
def test_a_bad_known_field_of_the_other_endpoints_is_a_400_naming_it(http, path, body, param):
    response = http.post(path, json=body)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"surprise": 2**64}, "surprise"),
        ({"surprise": -(2**63) - 1}, "surprise"),
        ({"surprise": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}, "surprise"),
        ({"messages": [{"role": "user", "content": "hi", "surprise": 10**30}]}, "messages"),
    ],
)
def test_a_value_no_worker_could_be_sent_is_a_400_naming_its_field(http, fields, param):
    """Integers past 64 bits and absurd nesting cannot cross channels-redis (msgpack)."""
    response = http.post("/v1/chat/completions", json=chat(**fields))
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["param"] == param


def test_valid_known_fields_are_served(start_worker, client):
    worker = start_worker(features=["tools", "json_schema", "logprobs"])
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        logprobs=True,
        top_logprobs=0,
        seed=-1,
        stop="END",
        response_format={"type": "json_object"},
        tools=[WEATHER],
        tool_choice="auto",
        parallel_tool_calls=True,
        metadata={},
        store=True,
        extra_body={"gpu_filter": {"pubkey": worker.pubkey}},
    )
    assert reply.choices[0].message.content
    assert worker.jobs[0]["openai_req"]["response_format"] == {"type": "json_object"}
