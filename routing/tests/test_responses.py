"""`/v1/responses` through a live server and real websocket workers, with the official SDK.

A Responses request runs as a chat job: the worker sees a chat request, and
the caller gets a Response (or its stream events) back.
"""

import io
import json
import time
from datetime import timedelta

import openai
import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from api.models import ApiKey
from conftest import wait_for
from routing.models import Job, StoredResponse
from testkit.fake_worker import chat_reply, stream_chunks

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
STREAM_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]



@pytest.fixture
def start_worker(start_worker):
    """Fake workers that announce the features these requests need (routing/features.py)."""

    def start(*args, **kwargs):
        kwargs.setdefault("features", ["tools", "json_schema", "logprobs", "n"])
        return start_worker(*args, **kwargs)

    return start

def only(worker) -> dict:
    return {"gpu_filter": {"pubkey": worker.pubkey}}


def sent_messages(worker, job: int = -1) -> list[dict]:
    return worker.jobs[job]["openai_req"]["messages"]


def tool_call_reply(*, name: str = "get_weather", arguments: str = '{"city": "Paris"}', call_id: str = "call_abc") -> dict:
    """What llama-cpp-python answers when the model calls a function."""
    reply = chat_reply("")
    reply["choices"][0]["message"] = {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
    }
    reply["choices"][0]["finish_reason"] = "tool_calls"
    return reply


def tool_call_chunks(*, name: str = "get_weather", pieces: tuple[str, ...] = ('{"city": ', '"Paris"}'), call_id: str = "call_abc") -> list[dict]:
    """A streamed tool call: id and name first, then the arguments in pieces."""
    base = {"id": "chatcmpl-worker", "object": "chat.completion.chunk", "created": int(time.time()), "model": "/models/model.gguf"}

    def chunk(delta, finish=None):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return [
        chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces],
        chunk({}, "tool_calls"),
    ]


def weather_then_answer(job):
    """Call get_weather until the tool's output is in the conversation, then answer from it."""
    req = job["openai_req"]
    tool = next((m for m in req["messages"] if m["role"] == "tool"), None)
    if req.get("stream"):
        yield from (stream_chunks([f"It is {tool['content']}"]) if tool else tool_call_chunks())
        yield {}
    else:
        yield chat_reply(f"It is {tool['content']}") if tool else tool_call_reply()


# --- Create --------------------------------------------------------------------------------


def test_it_answers_a_string_input_with_a_message(start_worker, client, db_access):
    worker = start_worker()
    response = client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "Hello from the worker"
    [message] = response.output
    assert (message.type, message.role, message.status, message.content[0].type) == ("message", "assistant", "completed", "output_text")
    assert response.model == MODEL
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (7, 4, 11)
    sent = worker.jobs[0]
    assert sent["openai_url"] == "/v1/chat/completions"
    assert sent["openai_req"]["messages"] == [{"role": "user", "content": "hi"}]
    job = wait_for(lambda: Job.objects.filter(public_id=response.id).first(), what="job recorded")
    assert (job.kind, job.status, job.prompt_tokens, job.completion_tokens) == (Job.Kind.CHAT, Job.Status.SUCCEEDED, 7, 4)


def test_instructions_are_the_system_message(start_worker, client):
    worker = start_worker()
    response = client.responses.create(model=MODEL, instructions="Answer in French.", input="hi", extra_body=only(worker))
    assert response.instructions == "Answer in French."
    assert sent_messages(worker) == [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hi"}]


def test_it_takes_items_as_input(start_worker, client):
    worker = start_worker()
    client.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is "}, {"type": "input_text", "text": "2+2?"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "4."}]},
            {"role": "user", "content": "And 3+3?"},
        ],
        extra_body=only(worker),
    )
    assert sent_messages(worker) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
    ]


def test_sampling_fields_reach_the_worker_under_their_chat_names(start_worker, client):
    worker = start_worker()
    response = client.responses.create(
        model=MODEL, input="hi", max_output_tokens=32, temperature=0.2, top_p=0.9, metadata={"run": "7"},
        extra_body={**only(worker), "seed": 42, "top_k": 20},
    )
    req = worker.jobs[0]["openai_req"]
    assert (req["max_tokens"], req["temperature"], req["top_p"], req["seed"], req["top_k"]) == (32, 0.2, 0.9, 42, 20)
    assert "max_output_tokens" not in req and "input" not in req and "metadata" not in req
    assert (response.max_output_tokens, response.temperature, response.top_p, response.metadata) == (32, 0.2, 0.9, {"run": "7"})


def test_a_reply_cut_at_the_token_limit_is_incomplete(start_worker, client):
    def cut(job):
        reply = chat_reply("Hello")
        reply["choices"][0]["finish_reason"] = "length"
        yield reply

    worker = start_worker(script=cut)
    response = client.responses.create(model=MODEL, input="hi", max_output_tokens=1, extra_body=only(worker))
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"


def test_a_json_schema_text_format_is_the_chat_response_format(start_worker, client):
    worker = start_worker()
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    response = client.responses.create(
        model=MODEL, input="ok?", text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        extra_body=only(worker),
    )
    assert worker.jobs[0]["openai_req"]["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    assert response.text.format.type == "json_schema"


def test_logprobs_come_back_on_the_output_text(start_worker, client):
    def with_logprobs(job):
        reply = chat_reply("Hi")
        reply["choices"][0]["logprobs"] = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]}]}
        yield reply

    worker = start_worker(script=with_logprobs)
    response = client.responses.create(model=MODEL, input="hi", top_logprobs=1, include=["message.output_text.logprobs"], extra_body=only(worker))
    req = worker.jobs[0]["openai_req"]
    assert (req["logprobs"], req["top_logprobs"]) == (True, 1)
    [logprob] = response.output[0].content[0].logprobs
    assert (logprob.token, logprob.logprob, logprob.bytes, logprob.top_logprobs[0].token) == ("Hi", -0.1, [72, 105], "Hi")


# --- Streaming -------------------------------------------------------------------------------


def test_it_streams_the_responses_events_in_order(start_worker, client):
    worker = start_worker()
    events = list(client.responses.create(model=MODEL, input="hi", stream=True, extra_body=only(worker)))
    assert [e.type for e in events] == STREAM_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello from the worker"
    created, completed = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == [] and created.id == completed.id
    assert completed.status == "completed" and completed.output_text == "Hello from the worker"
    assert completed.usage.output_tokens == 4 and completed.usage.total_tokens == completed.usage.input_tokens + 4
    item_id = events[2].item.id
    assert {e.item_id for e in events[3:10]} == {item_id} and completed.output[0].id == item_id
    assert worker.jobs[0]["openai_req"]["stream"] is True


def test_the_sdk_stream_helper_gives_the_final_response(start_worker, client, db_access):
    worker = start_worker()
    with client.responses.stream(model=MODEL, input="hi", extra_body=only(worker)) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "Hello from the worker"
    job = wait_for(lambda: Job.objects.filter(public_id=final.id, status=Job.Status.SUCCEEDED).first(), what="job recorded")
    assert job.stream and job.completion_tokens == 4


def test_a_worker_failing_mid_stream_fails_the_response(start_worker, client, db_access):
    def fails(job):
        yield from stream_chunks(["Hello"])[:2]
        yield {"error": "CUDA out of memory"}

    worker = start_worker(script=fails)
    events = list(client.responses.create(model=MODEL, input="hi", stream=True, extra_body=only(worker)))
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and "CUDA out of memory" in events[-1].response.error.message
    assert not StoredResponse.objects.filter(public_id=events[0].response.id).exists()


# --- Function tools ----------------------------------------------------------------------------


def test_a_function_call_round_trip(start_worker, client):
    worker = start_worker(script=weather_then_answer)
    first = client.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER], tool_choice="auto", extra_body=only(worker))
    [call] = first.output
    assert (call.type, call.name, call.call_id, json.loads(call.arguments)) == ("function_call", "get_weather", "call_abc", {"city": "Paris"})
    assert worker.jobs[0]["openai_req"]["tools"] == [{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}]
    assert worker.jobs[0]["openai_req"]["tool_choice"] == "auto"

    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}], extra_body=only(worker),
    )
    assert second.output_text == "It is sunny" and second.previous_response_id == first.id
    assert sent_messages(worker) == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
    ]


def test_function_calls_and_outputs_may_be_sent_as_items(start_worker, client):
    worker = start_worker(script=weather_then_answer)
    response = client.responses.create(
        model=MODEL, tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"},
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "rainy"}]},
        ],
        extra_body=only(worker),
    )
    assert response.output_text == "It is rainy"
    assert worker.jobs[0]["openai_req"]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_a_streamed_function_call_has_argument_events(start_worker, client):
    worker = start_worker(script=weather_then_answer)
    events = list(client.responses.create(model=MODEL, input="Weather?", tools=[WEATHER], stream=True, extra_body=only(worker)))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]
    added, done = events[2].item, events[6].item
    assert (added.type, added.name, added.call_id, added.arguments, added.status) == ("function_call", "get_weather", "call_abc", "", "in_progress")
    assert (done.id, done.arguments, done.status) == (added.id, '{"city": "Paris"}', "completed")
    assert events[-1].response.output[0].arguments == '{"city": "Paris"}'


def test_the_sdk_stream_helper_accumulates_a_function_call(start_worker, client):
    worker = start_worker(script=weather_then_answer)
    with client.responses.stream(model=MODEL, input="Weather?", tools=[WEATHER], extra_body=only(worker)) as stream:
        final = stream.get_final_response()
    [call] = final.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})


# --- Stored responses ----------------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation(start_worker, client):
    worker = start_worker()
    first = client.responses.create(model=MODEL, instructions="Be kind.", input="hi", extra_body=only(worker))
    second = client.responses.create(model=MODEL, previous_response_id=first.id, input="and then?", extra_body=only(worker))
    third = client.responses.create(model=MODEL, previous_response_id=second.id, input="bye", stream=True, extra_body=only(worker))
    list(third)
    # Instructions are not carried over, as OpenAI.
    assert sent_messages(worker) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello from the worker"},
        {"role": "user", "content": "and then?"},
        {"role": "assistant", "content": "Hello from the worker"},
        {"role": "user", "content": "bye"},
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_holding_a_nul_character_is_stored_and_continued(start_worker, client, stream):
    """PostgreSQL stores no NUL (the tiny random model writes them): the stored copy has U+FFFD."""
    text = "bad\u0000byte"
    worker = start_worker(script=lambda job: iter([*stream_chunks(["bad", "\u0000byte"]), {}]) if job["openai_req"].get("stream") else iter([chat_reply(text)]))
    first = client.responses.create(model=MODEL, input="hi", stream=stream, extra_body=only(worker))
    first_id = [e for e in first if e.type == "response.completed"][0].response.id if stream else first.id
    second = client.responses.create(model=MODEL, previous_response_id=first_id, input="and?", extra_body=only(worker))
    assert second.output_text == text  # what the worker sent is what the caller gets
    assert sent_messages(worker)[1] == {"role": "assistant", "content": "bad\ufffdbyte"}


def test_a_stored_response_is_retrieved_and_deleted(start_worker, client):
    worker = start_worker()
    created = client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_deleting_answers_openais_deleted_object(start_worker, client, http):
    worker = start_worker()
    created = client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    answer = http.delete(f"/v1/responses/{created.id}")
    assert answer.status_code == 200 and answer.json() == {"id": created.id, "object": "response.deleted", "deleted": True}


def test_a_streamed_response_is_stored(start_worker, client):
    worker = start_worker()
    events = list(client.responses.create(model=MODEL, input="hi", stream=True, extra_body=only(worker)))
    assert client.responses.retrieve(events[-1].response.id).output_text == "Hello from the worker"


def test_store_false_keeps_nothing(start_worker, client):
    worker = start_worker()
    created = client.responses.create(model=MODEL, input="hi", store=False, extra_body=only(worker))
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model=MODEL, input="more", previous_response_id=created.id, extra_body=only(worker))
    assert raised.value.body["param"] == "previous_response_id"


def age(response_id: str, *, days: float) -> None:
    StoredResponse.objects.filter(public_id=response_id).update(created_at=timezone.now() - timedelta(days=days))


def test_a_response_past_the_keep_days_is_not_found(start_worker, client, db_access):
    worker = start_worker()
    old = client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    recent = client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    age(old.id, days=settings.RESPONSES_KEEP_DAYS + 0.1)
    age(recent.id, days=settings.RESPONSES_KEEP_DAYS - 0.1)
    assert client.responses.retrieve(recent.id).id == recent.id
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(old.id)
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model=MODEL, input="more", previous_response_id=old.id, extra_body=only(worker))
    assert raised.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(old.id)


def test_storing_a_response_deletes_the_owners_expired_ones(start_worker, client, db_access):
    worker = start_worker()
    old = client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    age(old.id, days=settings.RESPONSES_KEEP_DAYS + 1)
    assert StoredResponse.objects.filter(public_id=old.id).exists()
    client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    assert not StoredResponse.objects.filter(public_id=old.id).exists()


def test_purge_responses_deletes_every_expired_one(db):
    kept = StoredResponse.objects.create(public_id="resp-kept", owner="a", model="m", body={"output": []})
    StoredResponse.objects.create(public_id="resp-old", owner="b", model="m", body={"output": []})
    age("resp-old", days=settings.RESPONSES_KEEP_DAYS + 1)
    out = io.StringIO()
    call_command("purge_responses", stdout=out)
    assert "1 expired" in out.getvalue()
    assert list(StoredResponse.objects.values_list("public_id", flat=True)) == [kept.public_id]


def test_another_owner_gets_404(queen, start_worker, client, db_access):
    worker = start_worker()
    _, raw = ApiKey.create_key(name="responses-owner")
    _, other = ApiKey.create_key(name="responses-other")
    mine = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=raw, max_retries=0, timeout=30)
    theirs = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=other, max_retries=0, timeout=30)
    created = mine.responses.create(model=MODEL, input="secret", extra_body=only(worker))
    assert mine.responses.retrieve(created.id).id == created.id
    for caller in (theirs, client):
        with pytest.raises(openai.NotFoundError):
            caller.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            caller.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            caller.responses.input_items.list(created.id)
        with pytest.raises(openai.NotFoundError) as raised:
            caller.responses.create(model=MODEL, input="tell me", previous_response_id=created.id, extra_body=only(worker))
        assert raised.value.body["code"] == "response_not_found" and raised.value.body["param"] == "previous_response_id"
    assert len(worker.jobs) == 1  # no 404 reached a worker
    assert mine.responses.retrieve(created.id).output_text == "Hello from the worker"


def test_the_input_items_of_a_response_are_listed(start_worker, client):
    worker = start_worker()
    first = client.responses.create(model=MODEL, input="hi", extra_body=only(worker))
    second = client.responses.create(model=MODEL, input="more", previous_response_id=first.id, extra_body=only(worker))
    items = client.responses.input_items.list(second.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "assistant"), ("message", "user")]
    assert items.data[1].id == first.output[0].id
    newest = client.responses.input_items.list(second.id, limit=1)
    assert newest.has_more and newest.data[0].content[0].text == "more"


def test_listed_input_items_have_the_sdk_shapes(start_worker, client):
    worker = start_worker(script=weather_then_answer)
    response = client.responses.create(
        model=MODEL, tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "hail"},
        ],
        extra_body=only(worker),
    )
    message, call, output = client.responses.input_items.list(response.id, order="asc").data
    assert message.content[0].type == "input_text" and message.content[0].text == "Weather?"
    assert (call.type, call.status, call.id.startswith("fc_")) == ("function_call", "completed", True)
    assert (output.type, output.status, output.output, output.call_id) == ("function_call_output", "completed", "hail", "c1")


# --- Refused by name ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"tools": [{"type": "function"}]}, "tools.0.name"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_time"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"truncation": "auto"}, "truncation"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"include": ["file_search_call.results"]}, "include.0"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input.0.type"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, "input.0.content.0.type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "input.0.content.0.file_id"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input.0.role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
        ({"input": []}, "input"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"seed": "42"}, "seed"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(http, fields, param):
    answer = http.post("/v1/responses", json={"model": MODEL, "input": "hi", **fields})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


def test_an_unknown_response_is_404_in_the_envelope(http):
    answer = http.get("/v1/responses/resp-nope")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "response_not_found"
    assert http.get("/v1/responses/resp-nope?stream=true").json()["error"]["param"] == "stream"


def test_the_schema_documents_the_responses_endpoints(http):
    paths = http.get("/v1/openapi.json").json()["paths"]
    assert set(paths["/v1/responses"]) == {"post"}
    assert set(paths["/v1/responses/{response_id}"]) == {"get", "delete"}
    assert set(paths["/v1/responses/{response_id}/input_items"]) == {"get"}
    assert set(paths["/v1/responses"]["post"]["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}



def test_a_post_without_a_key_or_cookie_is_a_json_401(queen):
    """As a browser-less SDK sends it: no CSRF cookie, no Referer (the issue's HTML 403)."""
    import httpx

    answer = httpx.post(f"{queen.url}/v1/responses", json={"model": MODEL, "input": "hi"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


# --- Hostile requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": MODEL}, "input"),
        ({"input": "hi"}, "model"),
        ({"model": ["a"], "input": "hi"}, "model"),
        ({"model": MODEL, "input": "hi", "stream": "maybe"}, "stream"),
        ({"model": MODEL, "input": 7}, "input"),
        ({"model": MODEL, "input": ["hi"]}, "input.0"),
        ({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]}, "input.0.content.0.text"),
        ({"model": MODEL, "input": "hi", "gpu_filter": {"capabilities": "sdxl"}}, "gpu_filter.capabilities"),
        ({"model": MODEL, "input": "hi", "timeout": "soon"}, "timeout"),
        ({"model": MODEL, "input": "hi", "surprise": 2**70}, "surprise"),
        ({"model": MODEL, "input": "hi", "n": 2}, "n"),
        ({"model": MODEL, "input": "hi", "messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ],
)
def test_wrong_types_are_400s_naming_the_field(http, body, param):
    answer = http.post("/v1/responses", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_a_body_nested_too_deep_is_refused(http):
    deep = "x"
    for _ in range(100):
        deep = [deep]
    answer = http.post("/v1/responses", json={"model": MODEL, "input": "hi", "extra": deep})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "extra"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"a string"', b"null"])
def test_a_body_that_is_not_an_object_is_a_400(http, body):
    answer = http.post("/v1/responses", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and set(answer.json()) == {"error"}


def test_a_conversation_past_the_message_limit_names_the_input(start_worker, client, http):
    from routing.serializers import MAX_MESSAGES

    worker = start_worker()
    first = client.responses.create(model=MODEL, input=[{"role": "user", "content": "hi"}] * (MAX_MESSAGES - 1), extra_body=only(worker))
    answer = http.post("/v1/responses", json={"model": MODEL, "input": "more", "previous_response_id": first.id})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "input"


def test_a_malformed_first_chunk_is_an_error_event(start_worker, client):
    worker = start_worker(script=lambda job: iter([{"choices": "garbage"}, {}]))
    stream = client.responses.create(model=MODEL, input="hi", stream=True, extra_body=only(worker))
    events = list(stream)
    assert [e.type for e in events] == ["error"] and "malformed" in events[0].message


def test_the_defaults_agents_send_are_accepted(start_worker, client):
    worker = start_worker()
    response = client.responses.create(
        model=MODEL, input="hi", background=False, truncation="disabled", service_tier="auto", reasoning={"effort": "none"},
        include=["reasoning.encrypted_content"], text={"format": {"type": "text"}, "verbosity": "medium"}, parallel_tool_calls=False,
        tools=[], tool_choice="none", stream_options=None, user="u-1", safety_identifier="s-1", prompt_cache_key="k-1", extra_body=only(worker),
    )
    assert response.status == "completed" and response.parallel_tool_calls is False
    assert (response.user, response.safety_identifier, response.prompt_cache_key) == ("u-1", "s-1", "k-1")
    req = worker.jobs[0]["openai_req"]
    assert req["parallel_tool_calls"] is False and req["user"] == "u-1"
    assert not {"background", "truncation", "reasoning", "include", "text", "safety_identifier", "prompt_cache_key"} & set(req)
