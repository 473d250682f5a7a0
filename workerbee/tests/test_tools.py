"""Tool calls read from an answer and streamed as OpenAI deltas (workerbee/tools.py), without a model."""

import json

import pytest

from workerbee.tools import CallStream, ToolPlan, could_be_call, stream_deltas

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time"}}


def plan(**req) -> ToolPlan:
    return ToolPlan.from_request({"tools": [WEATHER, TIME], **req})


def test_it_reads_tool_choice():
    assert plan().mode == "auto"
    assert plan(tool_choice="required").mode == "required"
    assert (plan(tool_choice={"type": "function", "function": {"name": "get_time"}}).forced) == "get_time"
    assert plan(tool_choice="none") is None
    assert ToolPlan.from_request({"messages": []}) is None


def test_it_takes_the_older_functions_form():
    legacy = ToolPlan.from_request({"functions": [{"name": "f"}], "function_call": {"name": "f"}})
    assert (legacy.mode, legacy.forced) == ("function", "f")


def test_a_forced_call_is_constrained_to_its_function():
    schema = plan(tool_choice={"type": "function", "function": {"name": "get_weather"}}).call_schema()
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert schema["properties"]["arguments"] == WEATHER["function"]["parameters"]
    assert len(plan(tool_choice="required").call_schema()["anyOf"]) == 2
    assert plan().call_schema() is None


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        ' <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '```json\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}\n```',
    ],
)
def test_it_reads_a_call_however_it_is_wrapped(text):
    [call] = plan().parse(text)
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")


@pytest.mark.parametrize("text", ["It is sunny.", '{"name": "teleport", "arguments": {}}', '{"city": "Paris"}', "{broken"])
def test_anything_else_is_text(text):
    assert plan().parse(text) == []


def test_text_is_held_back_only_while_it_may_be_a_call():
    assert could_be_call("  ") and could_be_call(' {"na') and could_be_call("<tool")
    assert not could_be_call(" It is")


def test_a_forced_call_streams_its_arguments_as_they_come():
    text = ' {"name": "get_weather", "arguments": {"city": "Paris"} } '
    stream = CallStream()
    deltas = [d for i in range(0, len(text), 3) for d in stream.feed(text[i : i + 3])] + stream.finish()
    first = deltas[0]
    assert (first["index"], first["type"], first["function"]) == (0, "function", {"name": "get_weather", "arguments": ""})
    assert first["id"] == stream.call_id
    arguments = "".join(d["function"]["arguments"] for d in deltas[1:])
    assert json.loads(arguments) == {"city": "Paris"} and arguments == stream.arguments
    assert len(deltas) > 3


def test_a_call_read_whole_streams_as_a_first_delta_then_argument_pieces():
    [call] = plan().parse('{"name": "get_weather", "arguments": {"city": "Paris in the spring"}}')
    deltas = stream_deltas([call], piece=8)
    assert deltas[0] == {"index": 0, "id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert "".join(d["function"]["arguments"] for d in deltas[1:]) == call.arguments


class Scripted:
    """Stands in for a Generation: the pieces a model wrote, then its finish reason."""

    logprobs = None
    prompt_tokens = [1, 2]
    completion_tokens = 3

    def __init__(self, *pieces: str, finish_reason: str = "stop"):
        self.pieces, self.finish_reason = pieces, finish_reason

    def __iter__(self):
        return iter(self.pieces)

    def take_logprobs(self):
        return []


def auto_stream(*pieces: str) -> list[dict]:
    from workerbee.catalog import Places
    from workerbee.inference import Engine, LlamaSettings, Shape

    engine = Engine(places=Places(None, None), settings=LlamaSettings())
    return [c["choices"][0] for c in engine._chat_stream([Scripted(*pieces)], Shape("m", "chatcmpl", "chat.completion"), plan())]


def test_under_auto_text_streams_as_it_comes():
    choices = auto_stream(" It", " is", " sunny.")
    assert [c["delta"].get("content") for c in choices[1:-1]] == [" It", " is", " sunny."]
    assert choices[-1]["finish_reason"] == "stop"


def test_under_auto_a_call_is_read_whole_then_streamed_as_deltas():
    choices = auto_stream(' {"name": "get_', 'weather", "arguments": {"city":', ' "Paris"}}')
    deltas = [d for c in choices if c["delta"].get("tool_calls") for d in c["delta"]["tool_calls"]]
    assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"].startswith("call_")
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert choices[-1]["finish_reason"] == "tool_calls"


def test_under_auto_text_that_only_looked_like_a_call_is_sent_as_text():
    choices = auto_stream(" {not", " json}")
    assert "".join(c["delta"].get("content") or "" for c in choices) == " {not json}"


@pytest.mark.parametrize(
    "text",
    [
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
        '```json\n[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]\n```',
    ],
)
def test_several_calls_in_one_answer_are_each_a_call(text):
    calls = plan().parse(text)
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2
    assert [d["index"] for d in stream_deltas(calls) if "id" in d] == [0, 1]


def test_without_parallel_tool_calls_only_the_first_call_is_kept():
    text = '[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]'
    assert [c.name for c in plan(parallel_tool_calls=False).parse(text)] == ["get_weather"]
    assert "several" in plan().instructions() and "several" not in plan(parallel_tool_calls=False).instructions()


@pytest.mark.parametrize("text", ['<tool_call>{"name": "get_time", "arguments": {}}</tool_call> and then some', "[]", '[{"name": "get_time"}, "x"]'])
def test_tags_with_text_around_them_or_odd_arrays_are_text(text):
    assert plan().parse(text) == []
