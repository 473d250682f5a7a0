"""A stream's frames that arrived together are relayed together (routing/keepalive.py `frames`)."""

import asyncio

import pytest

from routing import keepalive


async def arriving(*groups, fail: Exception | None = None):
    """The frames of `groups`, each group at once, the groups a loop turn apart."""
    for group in groups:
        for frame in group:
            yield frame
        await asyncio.sleep(0.01)
    if fail is not None:
        raise fail
    yield {}


async def collect(frames) -> list:
    return [item async for item in keepalive.frames(frames, interval=5)]


def test_frames_that_arrived_together_come_as_one_list_and_the_end_ends_them():
    one, two, three = {"n": 1}, {"n": 2}, {"n": 3}
    assert asyncio.run(collect(arriving([one, two], [three]))) == [[one, two], [three]]


def test_frames_before_a_failure_are_delivered_before_it_is_raised():
    async def scenario():
        seen = []
        with pytest.raises(TimeoutError):
            async for item in keepalive.frames(arriving([{"n": 1}, {"n": 2}], fail=TimeoutError("stalled")), interval=5):
                seen.append(item)
        return seen

    assert asyncio.run(scenario()) == [[{"n": 1}, {"n": 2}]]


def test_without_keepalives_each_frame_is_its_own_list():
    async def scenario():
        return [item async for item in keepalive.frames(arriving([{"n": 1}, {"n": 2}]), interval=0)]

    assert asyncio.run(scenario()) == [[{"n": 1}], [{"n": 2}]]


def _chunk(choices):
    return {"id": "chatcmpl-worker", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": choices}


def test_a_malformed_chunk_does_not_take_the_frames_before_it_from_the_caller(settings):
    """relay.chunk counts a frame's text as delivered (a continuation starts from
    it) before the relay sends it: when a later frame of the same batch is
    malformed, the earlier ones must still reach the caller, or the continued
    stream ends with [DONE] and a token missing."""
    from types import SimpleNamespace

    from routing import services

    settings.STREAM_KEEPALIVE_INTERVAL = 5
    role = _chunk([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
    token = _chunk([{"index": 0, "delta": {"content": "T:0 "}, "finish_reason": None}])
    garbage = {"choices": "not a list"}

    async def scenario():
        job = SimpleNamespace(
            first=role, frames=arriving([token, garbage]), public_id="chatcmpl-x", created=0,
            spec=SimpleNamespace(model=SimpleNamespace(name="m"), openai_url="/v1/chat/completions"),
        )
        relay = services.StreamRelay(job, object_name="chat.completion.chunk")
        sent = []
        with pytest.raises(services.MalformedReply):
            async for event in services._part_events(job, relay):
                sent.append(event)
        return relay, "".join(sent)

    relay, sent = asyncio.run(scenario())
    assert relay.text(0) == "T:0 "  # what a continuation would say the caller has
    assert '"content":"T:0 "' in sent  # and the caller has it
