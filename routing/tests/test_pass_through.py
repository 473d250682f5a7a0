"""Pass-through by default: every field of the caller's request reaches the worker unchanged.

Queenbee validates the fields it knows and owns `model`, `stream` and its own
extensions; whatever else the caller sends is the worker's to interpret.
"""

from api.model_names import parse_model

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"

UNKNOWN = {
    "surprise": {"nested": [1, 2, {"deep": None}]},
    "prediction": {"type": "content", "content": "Hello"},
    "web_search_options": {},
    "verbosity": "low",
    "prompt_cache_key": "k-1",
    "grammar": 'root ::= "yes" | "no"',
}
KNOWN = {
    "logprobs": True,
    "top_logprobs": 5,
    "parallel_tool_calls": False,
    "metadata": {"team": "bees", "run": "7"},
    "store": False,
    "service_tier": "auto",
    "reasoning_effort": "low",
    "modalities": ["text"],
    "seed": 42,
    "stop": ["\n\n", "END"],
    "max_completion_tokens": 64,
    "user": "user-1",
    "n": 1,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "strict": True, "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    },
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
}


def pinned(worker) -> dict:
    return {"gpu_filter": {"pubkey": worker.pubkey}}


def test_a_chat_request_reaches_the_worker_with_every_field_unchanged(start_worker, http):
    worker = start_worker(features=["tools", "json_schema", "logprobs"])
    messages = [
        {"role": "user", "content": "hi", "x-trace": "m1"},
        {"role": "assistant", "content": None, "refusal": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    body = {"model": MODEL, "messages": messages, **KNOWN, **UNKNOWN, **pinned(worker)}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text[:300]
    sent = worker.jobs[0]["openai_req"]
    for key, value in {**KNOWN, **UNKNOWN}.items():
        assert sent[key] == value, key
    assert sent["messages"] == messages


def test_a_streamed_chat_request_forwards_unknown_fields_too(start_worker, http):
    worker = start_worker()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True, **UNKNOWN, **pinned(worker)}
    body["stream_options"] = {"include_usage": True, "include_obfuscation": False}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert "data: [DONE]" in response.read().decode()
    sent = worker.jobs[0]["openai_req"]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert all(sent[key] == value for key, value in UNKNOWN.items())


def test_a_text_completion_forwards_its_own_fields_and_unknown_ones(start_worker, http):
    worker = start_worker(features=["logprobs"], script=lambda job: [{"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}])
    body = {"model": MODEL, "prompt": "Once", "logprobs": 3, "suffix": "!", "best_of": 1, "seed": 7, **UNKNOWN, **pinned(worker)}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text[:300]
    sent = worker.jobs[0]["openai_req"]
    assert {key: sent[key] for key in ("logprobs", "suffix", "best_of", "seed")} == {"logprobs": 3, "suffix": "!", "best_of": 1, "seed": 7}
    assert all(sent[key] == value for key, value in UNKNOWN.items())


def test_an_embeddings_request_forwards_unknown_fields(start_worker, http):
    worker = start_worker()
    body = {"model": MODEL, "input": ["a", "b"], "dimensions": 3, "user": "u", **UNKNOWN, **pinned(worker)}
    assert http.post("/v1/embeddings", json=body).status_code == 200
    sent = worker.jobs[0]["openai_req"]
    assert sent["input"] == ["a", "b"] and sent["dimensions"] == 3 and sent["user"] == "u"
    assert all(sent[key] == value for key, value in UNKNOWN.items())


def test_an_image_request_forwards_unknown_fields(start_worker, http):
    worker = start_worker(capabilities=["sdxl"])
    body = {"prompt": "a bee", "quality": "hd", "style": "natural", **pinned(worker)}
    assert http.post("/v1/images/generations", json=body).status_code == 200
    sent = worker.jobs[0]["openai_req"]
    assert sent["quality"] == "hd" and sent["style"] == "natural"


def test_queenbee_keeps_owning_the_model_and_its_extensions(start_worker, http):
    worker = start_worker()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "timeout": 30, **pinned(worker)}
    assert http.post("/v1/chat/completions", json=body).status_code == 200
    sent = worker.jobs[0]["openai_req"]
    assert sent["model"] == parse_model(MODEL).cli_name  # resolved for the worker (reference §17.2)
    assert sent["stream"] is False
    assert sent["gpu_filter"]["pubkey"] == worker.pubkey and "llama-infer" in sent["gpu_filter"]["capabilities"]
