"""A consumer's end does not cancel the channel-layer receive it had in flight
(workers/resilient.py): channels-redis pops all of a process's "specific."
channels with one receive, and cancelling that one between its pop and its
backup write loses a message meant for another channel, such as a stream frame
crossing from another process (the soak's rare stream with [DONE] and a token
missing, when a worker was killed mid-answer)."""

import asyncio
import functools

from channels.layers import InMemoryChannelLayer

from workers import resilient


def test_a_receive_popping_for_another_channel_is_not_lost_when_the_consumer_ends():
    async def scenario():
        mailbox: list[dict] = []  # the reply channel of the process's requests
        own: asyncio.Queue = asyncio.Queue()  # the consumer's own channel
        popped = asyncio.Event()

        async def receive():
            """channels-redis' receive holding the process's lock: pop, write the
            backup (an await), hand the message to its channel's buffer."""
            message = {"type": "job.frame", "job_id": "j", "text": '{"n": 7}'}
            popped.set()
            await asyncio.sleep(0.01)  # ZADD to the backup queue
            mailbox.append(message)
            return await own.get()

        left: list[asyncio.Task] = []
        consumer_receive = asyncio.ensure_future(resilient._retrying(receive, left)())
        await popped.wait()
        consumer_receive.cancel()  # the worker disconnected: Channels ends the consumer
        await asyncio.gather(consumer_receive, return_exceptions=True)
        await asyncio.sleep(0.05)
        routed = list(mailbox)
        own.put_nowait(resilient.RECEIVE_DONE)  # what the ended consumer sends itself
        await asyncio.wait(left, timeout=1)
        return routed, [t.done() for t in left]

    routed, done = asyncio.run(scenario())
    assert routed == [{"type": "job.frame", "job_id": "j", "text": '{"n": 7}'}]
    assert done == [True]


def test_an_ended_consumer_lets_its_left_receive_finish():
    async def scenario():
        layer = InMemoryChannelLayer()
        consumer = resilient.ResilientConsumer()
        consumer.channel_layer = layer
        consumer.channel_name = await layer.new_channel()
        consumer.channel_receive = functools.partial(layer.receive, consumer.channel_name)
        pending = asyncio.ensure_future(consumer.channel_receive())
        await asyncio.sleep(0.01)
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        left = list(consumer._left_receives)
        await consumer._finish_left_receives()
        await asyncio.wait(left, timeout=1)
        return [t.done() and not t.cancelled() for t in left], len(resilient._left_running)

    done, still_running = asyncio.run(scenario())
    assert done == [True]
    assert still_running == 0
