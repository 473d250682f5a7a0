"""The Responses <-> chat translation on its own (routing/responses.py: no database, no server)."""

from routing.responses import EventTranslator, chat_messages, chat_request, input_items, response_from_completion

CALL = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "resp-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def run(chunks: list[dict], body: dict | None = None) -> tuple[list[dict], dict]:
    translator = EventTranslator(body or {})
    events = translator.start(chunks[0])
    for c in chunks:
        events += translator.chunk(c)
    closing, final = translator.finish()
    events += closing
    events.append(translator.done(final))
    return events, final


def test_a_string_input_is_one_user_message_with_an_id():
    [item] = input_items("hi")
    assert item["id"].startswith("msg_") and item["content"] == [{"type": "input_text", "text": "hi"}]
    assert chat_messages([item]) == [{"role": "user", "content": "hi"}]


def test_an_assistant_message_and_the_calls_after_it_are_one_chat_message():
    items = input_items([{"role": "assistant", "content": "Let me look."}, CALL, {**CALL, "call_id": "c2"}, {"type": "function_call_output", "call_id": "c1", "output": "1"}])
    assert chat_messages(items) == [
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ]


def test_an_image_keeps_the_content_as_chat_parts():
    [message] = chat_messages(input_items([{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
    ]}]))
    assert message["content"] == [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}]


def test_a_stream_request_asks_the_chat_path_for_its_usage():
    chat = chat_request({"model": "m", "input": "hi", "stream": True, "stream_options": {"include_obfuscation": False}}, context=input_items("hi"))
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


def test_text_then_a_tool_call_are_two_items_in_order():
    events, final = run([
        chunk({"role": "assistant"}), chunk({"content": "Looking"}),
        chunk({"tool_calls": [{"index": 0, "id": "c9", "function": {"name": "get_", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": "{}"}}]}), chunk({}, "tool_calls"),
    ])
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]
    message, call = final["output"]
    assert message["content"][0]["text"] == "Looking"
    assert (call["name"], call["call_id"], call["arguments"]) == ("get_weather", "c9", "{}")
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1]


def test_a_stream_with_nothing_said_still_ends_with_one_empty_message():
    events, final = run([chunk({"role": "assistant"}), chunk({}, "stop")])
    assert final["output"][0]["content"][0]["text"] == "" and final["status"] == "completed"
    assert "response.output_text.delta" not in [e["type"] for e in events]


def test_a_stream_cut_at_the_limit_ends_incomplete_with_its_usage():
    usage = {"id": "resp-1", "created": 1, "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    events, final = run([chunk({"content": "a"}, "length"), usage])
    assert events[-1]["type"] == "response.incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 1
    assert final["output"][0]["status"] == "incomplete"


def test_a_tool_call_with_object_arguments_is_given_a_string_and_a_call_id():
    completion = {"id": "resp-1", "created": 1, "model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}, "finish_reason": "tool_calls"},
    ]}
    [call] = response_from_completion(completion, body={})["output"]
    assert call["arguments"] == '{"a": 1}' and call["call_id"].startswith("call_")


def test_streamed_logprobs_reach_the_deltas_and_the_final_part():
    logprobs = {"content": [{"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]}]}]}
    first = chunk({"content": "a"})
    first["choices"][0]["logprobs"] = logprobs
    events, final = run([first, chunk({}, "stop")])
    [delta] = [e for e in events if e["type"] == "response.output_text.delta"]
    assert delta["logprobs"] == [{"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "a", "logprob": -0.5}]}]
    assert final["output"][0]["content"][0]["logprobs"][0]["bytes"] == [97]


def test_a_chat_stream_with_batched_events_and_keepalives_translates_whole():
    """The chat relay joins the events of frames that arrived together into one
    string, and sends keep-alive comments while it waits: each event is translated,
    and a keep-alive passes through as one."""
    import asyncio
    import json as _json

    from routing.keepalive import KEEPALIVE
    from routing.responses_services import _events

    def chunk(delta, finish=None):
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def sse(value):
        return f"data: {value if isinstance(value, str) else _json.dumps(value)}\n\n"

    items = [
        sse(chunk({"role": "assistant", "content": "Hel"})),
        KEEPALIVE,
        sse(chunk({"content": "lo"})) + sse(chunk({"content": " there"})) + sse(chunk({}, "stop")),
        sse("[DONE]"),
    ]

    async def chat_stream():
        for item in items:
            yield item

    async def collect():
        return [e async for e in _events(chat_stream(), body={"model": "m", "input": "hi", "store": False}, owner="o", context=[])]

    out = asyncio.run(collect())
    assert out.count(KEEPALIVE) == 1
    deltas = [_json.loads(e.split("data: ", 1)[1]) for e in out if "response.output_text.delta" in e]
    assert "".join(d["delta"] for d in deltas) == "Hello there"
    assert "response.completed" in out[-1]
