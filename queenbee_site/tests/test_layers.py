"""Queenbee's channel layers: the in-memory one still expires messages, only
less often; the Redis one sends as channels-redis does, in one round trip."""

import asyncio
import os
import time
import uuid

import pytest
from channels.exceptions import ChannelFull

from queenbee_site import layers

needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")


def test_expired_messages_are_swept_at_most_once_per_interval(monkeypatch):
    monkeypatch.setattr(layers, "SWEEP_INTERVAL", 30.0)

    async def scenario():
        layer = layers.InMemoryChannelLayer(expiry=0.5)
        await layer.send("stale", {"type": "old"})
        await layer.send("live", {"type": "first"})
        assert await layer.receive("live") == {"type": "first"}  # sweeps now: nothing expired yet
        await asyncio.sleep(0.6)
        await layer.send("live", {"type": "second"})
        assert await layer.receive("live") == {"type": "second"}  # within the interval: no sweep
        assert "stale" in layer.channels
        layer._next_sweep = 0.0  # the interval has passed
        await layer.send("live", {"type": "third"})
        assert await layer.receive("live") == {"type": "third"}  # the next sweep drops the stale message
        assert "stale" not in layer.channels

    asyncio.run(scenario())


def redis_layer(**config) -> layers.RedisChannelLayer:
    return layers.RedisChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"test-{uuid.uuid4().hex}", **config)


@needs_redis
def test_the_redis_layer_delivers_to_plain_and_process_channels_in_order():
    async def scenario():
        layer = redis_layer()
        other_process = redis_layer()
        other_process.prefix = layer.prefix
        specific = await layer.new_channel()
        for n in range(3):
            await other_process.send(specific, {"type": "frame", "n": n})
            await other_process.send("plain", {"type": "job", "n": n})
        assert [(await layer.receive(specific))["n"] for _ in range(3)] == [0, 1, 2]
        assert [(await layer.receive("plain"))["n"] for _ in range(3)] == [0, 1, 2]
        await layer.flush()
        await layer.close_pools()
        await other_process.close_pools()

    asyncio.run(scenario())


@needs_redis
def test_the_redis_layer_refuses_a_full_channel_until_its_messages_expire():
    async def scenario():
        layer = redis_layer(capacity=2, expiry=1)
        await layer.send("full", {"type": "a"})
        await layer.send("full", {"type": "b"})
        with pytest.raises(ChannelFull):
            await layer.send("full", {"type": "c"})
        await asyncio.sleep(2.1 - time.time() % 1)  # two whole seconds later: both expired
        await layer.send("full", {"type": "d"})
        assert await layer.receive("full") == {"type": "d"}
        await layer.flush()
        await layer.close_pools()

    asyncio.run(scenario())



async def frame_across_an_ending_consumer(layer_class) -> dict | None:
    """A frame from another process to this process's reply channel, popped
    while a consumer's receive is in flight and that consumer ends (Channels
    cancels its receive when its worker disconnects). Returns what the reply
    channel then receives, or None if nothing comes within a second.

    The pop is made to take a while (as the backup ZADD after channels-redis's
    BZPOPMIN does), so that the cancellation lands inside it every time."""
    prefix = f"test-{uuid.uuid4().hex}"
    layer = layer_class(hosts=[os.environ["REDIS_URL"]], prefix=prefix)
    other_process = layer_class(hosts=[os.environ["REDIS_URL"]], prefix=prefix)
    popping, pop = asyncio.Event(), layer.receive_single

    async def slow_pop(channel):
        popped = await pop(channel)
        popping.set()
        await asyncio.sleep(0.2)
        return popped

    layer.receive_single = slow_pop
    consumer, reply = await layer.new_channel(), await layer.new_channel()
    consumer_receive = asyncio.ensure_future(layer.receive(consumer))
    await asyncio.sleep(0.05)  # the consumer's receive is the one waiting on Redis
    reply_receive = asyncio.ensure_future(layer.receive(reply))
    await asyncio.sleep(0.05)
    await other_process.send(reply, {"type": "job.frame", "n": 7})
    await asyncio.wait_for(popping.wait(), 5)
    consumer_receive.cancel()  # the worker disconnected
    await asyncio.gather(consumer_receive, return_exceptions=True)
    done, _ = await asyncio.wait([reply_receive], timeout=1)
    reply_receive.cancel()
    await asyncio.gather(reply_receive, return_exceptions=True)
    await layer.flush()
    await other_process.close_pools()
    return reply_receive.result() if done else None


@needs_redis
def test_a_consumer_ending_mid_pop_does_not_lose_another_channels_message():
    assert asyncio.run(frame_across_an_ending_consumer(layers.RedisChannelLayer)) == {"type": "job.frame", "n": 7}


@needs_redis
def test_channels_redis_alone_loses_it():
    """What the layer is for: channels-redis's receive, cancelled mid-pop,
    takes the other channel's message with it."""
    assert asyncio.run(frame_across_an_ending_consumer(layers.ChannelsRedisChannelLayer)) is None
