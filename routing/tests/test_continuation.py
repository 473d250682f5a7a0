"""A stream whose worker fails mid-answer goes on on another worker: one stream, whole text."""

import json
import uuid

import pytest

from conftest import wait_for
from routing.models import Job
from stats.models import WorkerStats
from stats.services import Failure, punish
from testkit.fake_worker import Delay, Disconnect, completion_chunks, delivered_of, rest_of, stream_chunks
from workers.models import Worker

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "tell me a story"}]
STORY = ["Once", " upon", " a", " time", " there", " was", " a", " bee", "."]


def tag() -> str:
    return f"cont-{uuid.uuid4().hex[:8]}"


def failing(after: int, failure=Disconnect(), *, prompt: str = ""):
    """Stream `after` tokens of what is left of the story, then fail."""

    def script(job):
        rest = rest_of(STORY, delivered_of(job, prompt))
        chunks = completion_chunks(rest) if "prompt" in job["openai_req"] else stream_chunks(rest)[1:]
        if "messages" in job["openai_req"]:
            yield stream_chunks([])[0]  # the role chunk
        yield from chunks[:after]
        yield failure

    return script


def finishing(*, prompt: str = ""):
    """Stream what is left of the story, with usage in the last chunk as llama.cpp does."""

    def script(job):
        rest = rest_of(STORY, delivered_of(job, prompt))
        chunks = completion_chunks(rest) if "prompt" in job["openai_req"] else stream_chunks(rest)
        chunks[-1]["usage"] = {"prompt_tokens": 20, "completion_tokens": len(rest), "total_tokens": 20 + len(rest)}
        yield from chunks
        yield {}

    return script


def ranked_last(worker) -> None:
    punish(worker_id=Worker.objects.get(identity=worker.identity).pk, reason=Failure.BUSY)


def sse_events(http, url: str, body: dict) -> list:
    """The stream's events as sent: parsed chunks, "[DONE]", and comment lines."""
    events = []
    with http.stream("POST", url, json=body) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith(":"):
                events.append(line)
            elif line.startswith("data: "):
                events.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    return events


def chat_text(events) -> str:
    return "".join(c["delta"].get("content") or "" for e in events if isinstance(e, dict) for c in e.get("choices", []))


def test_a_chat_stream_is_continued_on_another_worker_when_its_worker_dies(start_worker, http, db_access):
    cap = tag()
    dying = start_worker(script=failing(3), capabilities=["llama-infer", cap])
    rescuer = start_worker(script=finishing(), capabilities=["llama-infer", cap], features=["continue"])
    ranked_last(rescuer)
    body = {"model": MODEL, "messages": HI, "stream": True, "stream_options": {"include_usage": True}, "gpu_filter": {"capabilities": [cap]}}
    events = sse_events(http, "/v1/chat/completions", body)

    assert chat_text(events) == "".join(STORY)
    chunks = [e for e in events if isinstance(e, dict)]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert sum(1 for c in chunks for ch in c["choices"] if ch["delta"].get("role")) == 1
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"
    assert not any("error" in c for c in chunks)
    # Usage covers both parts: 3 tokens delivered by the first worker, 6 by the second,
    # and the second's prompt less the 3 tokens it was given as its message.
    assert chunks[-1]["usage"] == {"prompt_tokens": 17, "completion_tokens": 9, "total_tokens": 26}

    [job] = rescuer.jobs
    req = job["openai_req"]
    assert req["messages"] == [*HI, {"role": "assistant", "content": "Once upon a"}]
    assert req["continue_final_message"] is True and req["add_generation_prompt"] is False
    assert "continue" in req["gpu_filter"]["capabilities"]

    stream_id = chunks[0]["id"]
    record = wait_for(lambda: Job.objects.filter(public_id=stream_id).first(), what="stream recorded")
    assert (record.status, record.continuations, record.worker.identity) == ("succeeded", 1, rescuer.identity)
    assert (record.prompt_tokens, record.completion_tokens) == (17, 9)
    part = wait_for(lambda: Job.objects.filter(public_id=f"{stream_id}-part1").first(), what="failed part recorded")
    assert (part.status, part.worker.identity, part.completion_tokens) == ("failed", dying.identity, 3)
    stats = wait_for(lambda: WorkerStats.objects.filter(worker__identity=dying.identity, punish_reason="disconnect").first(), what="dead worker punished")
    assert stats.punished_until


@pytest.mark.parametrize(
    "failure",
    [Delay(3), {"error": "CUDA error: an illegal memory access", "error_type": "RuntimeError"}, {"choices": "garbage"}],
    ids=["stall", "error-frame", "garbage"],
)
def test_a_stream_is_continued_after_a_stall_an_error_frame_or_garbage(start_worker, http, db_access, failure):
    cap = tag()
    start_worker(script=failing(2, failure), capabilities=["llama-infer", cap])
    rescuer = start_worker(script=finishing(), capabilities=["llama-infer", cap], features=["continue"])
    ranked_last(rescuer)
    body = {"model": MODEL, "messages": HI, "stream": True, "ft_timeout": 1, "gpu_filter": {"capabilities": [cap]}}
    events = sse_events(http, "/v1/chat/completions", body)
    assert chat_text(events) == "".join(STORY)
    assert events[-1] == "[DONE]"
    assert rescuer.jobs[0]["openai_req"]["messages"][-1] == {"role": "assistant", "content": "Once upon"}


def test_only_workers_that_announce_continuation_get_a_continuation_job(start_worker, http, db_access):
    cap = tag()
    start_worker(script=failing(2), capabilities=["llama-infer", cap])
    original = start_worker(script=finishing(), capabilities=["llama-infer", cap])  # the unmodified worker: no features
    ranked_last(original)
    events = sse_events(http, "/v1/chat/completions", {"model": MODEL, "messages": HI, "stream": True, "gpu_filter": {"capabilities": [cap]}})
    assert chat_text(events) == "Once upon"
    assert "disconnected" in events[-1]["error"]["message"] and "[DONE]" not in events
    assert original.jobs == []


def test_a_completions_stream_is_continued_by_any_worker(start_worker, http, db_access):
    cap, prompt = tag(), "A story: "
    start_worker(script=failing(4, prompt=prompt), capabilities=["llama-infer", cap])
    original = start_worker(script=finishing(prompt=prompt), capabilities=["llama-infer", cap])
    ranked_last(original)
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 20, "echo": True, "stream": True, "gpu_filter": {"capabilities": [cap]}}
    events = sse_events(http, "/v1/completions", body)
    text = "".join(c["text"] for e in events if isinstance(e, dict) for c in e["choices"])
    assert text == "".join(STORY)
    assert events[-1] == "[DONE]"
    req = original.jobs[0]["openai_req"]
    assert (req["prompt"], req["max_tokens"], req["echo"]) == (prompt + "Once upon a time", 16, False)
    assert "continue_final_message" not in req


def test_continuations_are_bounded_then_the_stream_ends_with_an_error_event(start_worker, http, db_access):
    cap = tag()
    workers = [start_worker(script=failing(1), capabilities=["llama-infer", cap], features=["continue"]) for _ in range(4)]
    events = sse_events(http, "/v1/chat/completions", {"model": MODEL, "messages": HI, "stream": True, "gpu_filter": {"capabilities": [cap]}})
    # The first part and STREAM_CONTINUATIONS (2) continuations, one token each.
    assert chat_text(events) == "Once upon a"
    assert "error" in events[-1] and "[DONE]" not in events
    assert sum(len(w.jobs) for w in workers) == 3
    stream_id = events[0]["id"]
    record = wait_for(lambda: Job.objects.filter(public_id=stream_id).first(), what="stream recorded")
    assert (record.status, record.continuations) == ("failed", 2)
    assert Job.objects.filter(public_id__startswith=f"{stream_id}-part", status="failed").count() == 2


def test_a_continuation_asks_only_for_the_tokens_left(start_worker, http, db_access):
    cap = tag()
    start_worker(script=failing(2), capabilities=["llama-infer", cap])
    rescuer = start_worker(script=finishing(), capabilities=["llama-infer", cap], features=["continue"])
    ranked_last(rescuer)
    body = {"model": MODEL, "messages": HI, "max_tokens": 30, "stream": True, "gpu_filter": {"capabilities": [cap]}}
    sse_events(http, "/v1/chat/completions", body)
    assert rescuer.jobs[0]["openai_req"]["max_tokens"] == 28


def test_a_stream_filtered_to_one_worker_is_not_continued_elsewhere(start_worker, http, db_access):
    cap = tag()
    dying = start_worker(script=failing(2), capabilities=["llama-infer", cap], features=["continue"])
    other = start_worker(script=finishing(), capabilities=["llama-infer", cap], features=["continue"])
    events = sse_events(http, "/v1/chat/completions", {"model": MODEL, "messages": HI, "stream": True, "gpu_filter": {"pubkey": dying.pubkey}})
    assert "error" in events[-1] and other.jobs == []


def test_a_worker_lost_after_its_last_chunk_but_before_its_end_marker_leaves_a_whole_stream(start_worker, http, db_access):
    worker = start_worker(script=lambda job: iter([*stream_chunks(STORY), Disconnect()]))
    events = sse_events(http, "/v1/chat/completions", {"model": MODEL, "messages": HI, "stream": True, "gpu_filter": {"pubkey": worker.pubkey}})
    assert chat_text(events) == "".join(STORY) and events[-1] == "[DONE]"
    record = wait_for(lambda: Job.objects.filter(public_id=events[0]["id"]).first(), what="stream recorded")
    assert (record.status, record.continuations) == ("succeeded", 0)


def test_a_worker_lost_after_the_callers_token_limit_ends_the_stream_with_finish_reason_length(start_worker, http, db_access):
    cap, prompt = tag(), "A story: "
    start_worker(script=failing(4, prompt=prompt), capabilities=["llama-infer", cap])
    other = start_worker(script=finishing(prompt=prompt), capabilities=["llama-infer", cap])
    ranked_last(other)
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 4, "stream": True, "gpu_filter": {"capabilities": [cap]}}
    events = sse_events(http, "/v1/completions", body)
    assert "".join(c["text"] for e in events if isinstance(e, dict) for c in e["choices"]) == "Once upon a time"
    assert events[-2]["choices"][0]["finish_reason"] == "length" and events[-1] == "[DONE]"
    assert other.jobs == []
