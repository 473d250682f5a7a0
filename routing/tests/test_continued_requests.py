"""The request that continues a stream (routing/continuation.py), without a server."""

from routing.continuation import CHAT_URL, COMPLETIONS_URL, Delivered, continuable, continued_request, limit_reached
from workers.services import Need

NEED = Need(size=7, model="m", capabilities=("llama-infer",))
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 10, "gpu_filter": {"capabilities": ["llama-infer"]}}


def test_a_chat_continuation_asks_a_worker_with_the_feature_to_continue_the_delivered_message():
    payload, need = continued_request(openai_url=CHAT_URL, payload=CHAT, need=NEED, delivered=Delivered("Hello wor", 3))
    assert payload["messages"][-1] == {"role": "assistant", "content": "Hello wor"}
    assert (payload["continue_final_message"], payload["add_generation_prompt"], payload["max_tokens"]) == (True, False, 7)
    assert need.capabilities == ("llama-infer", "continue") and payload["gpu_filter"]["capabilities"] == ["llama-infer", "continue"]
    assert CHAT["messages"] == [{"role": "user", "content": "hi"}]  # the original request is untouched


def test_a_completion_continuation_appends_the_delivered_text_for_any_worker():
    payload, need = continued_request(openai_url=COMPLETIONS_URL, payload={"prompt": ["Once"], "echo": True}, need=NEED, delivered=Delivered(" upon", 1))
    assert (payload["prompt"], payload["echo"], payload["max_tokens"]) == ("Once upon", False, 15)
    assert need == NEED


def test_nothing_delivered_yet_sends_the_request_again_unchanged():
    assert continued_request(openai_url=CHAT_URL, payload=CHAT, need=NEED, delivered=Delivered("", 0)) == (CHAT, NEED)


def test_several_choices_tool_calls_and_finished_streams_are_not_continued():
    assert continuable(openai_url=CHAT_URL, payload=CHAT, choices={0}, tool_calls=False, finished=False)
    assert not continuable(openai_url=CHAT_URL, payload={**CHAT, "n": 2}, choices={0}, tool_calls=False, finished=False)
    assert not continuable(openai_url=CHAT_URL, payload=CHAT, choices={0, 1}, tool_calls=False, finished=False)
    assert not continuable(openai_url=CHAT_URL, payload=CHAT, choices={0}, tool_calls=True, finished=False)
    assert not continuable(openai_url=CHAT_URL, payload=CHAT, choices={0}, tool_calls=False, finished=True)
    assert not continuable(openai_url=COMPLETIONS_URL, payload={"prompt": ["a", "b"]}, choices={0}, tool_calls=False, finished=False)
    # Under a grammar the second worker would start the JSON over: not continued.
    for constrained in ({"response_format": {"type": "json_object"}}, {"tools": [{"type": "function"}]}, {"grammar": "root ::= x"}):
        assert not continuable(openai_url=CHAT_URL, payload={**CHAT, **constrained}, choices={0}, tool_calls=False, finished=False)
    assert continuable(openai_url=CHAT_URL, payload={**CHAT, "response_format": {"type": "text"}}, choices={0}, tool_calls=False, finished=False)


def test_a_text_that_used_the_whole_token_limit_is_not_continued():
    assert limit_reached(openai_url=CHAT_URL, payload=CHAT, delivered_tokens=10)
    assert not limit_reached(openai_url=CHAT_URL, payload={**CHAT, "max_tokens": None}, delivered_tokens=10_000)
    assert limit_reached(openai_url=COMPLETIONS_URL, payload={"prompt": "x"}, delivered_tokens=16)
    assert continued_request(openai_url=CHAT_URL, payload=CHAT, need=NEED, delivered=Delivered("x" * 10, 10)) is None
