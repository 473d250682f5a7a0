"""The process's reply mailbox: replies to this process's own requests skip the layer."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from workers import events
from workers.mailbox import Mailbox


def test_a_reply_to_this_process_goes_straight_to_its_job():
    async def scenario():
        mailbox = Mailbox()
        await mailbox.start()
        channel = mailbox.reply_channel()
        inbox = mailbox.open("job-1")
        delivered = mailbox.deliver(channel, events.frame(job_id="job-1", text="{}", last=True))
        assert delivered and inbox.get_nowait() == events.frame(job_id="job-1", text="{}", last=True)
        # A job nobody waits for any more: taken (not sent over the layer) and dropped.
        assert mailbox.deliver(channel, events.frame(job_id="gone", text="{}", last=True))
        await mailbox.stop()

    asyncio.run(scenario())


def test_a_reply_to_another_process_is_left_to_the_channel_layer():
    async def scenario():
        mailbox = Mailbox()
        await mailbox.start()
        inbox = mailbox.open("job-1")
        other = await get_channel_layer().new_channel()
        assert not mailbox.deliver(other, events.frame(job_id="job-1", text="{}", last=True))
        assert not mailbox.deliver("", events.frame(job_id="job-1", text="{}", last=True))
        # What does come over the layer is sorted into the same queue.
        await get_channel_layer().send(mailbox.channel_name, events.frame(job_id="job-1", text="{}", last=False))
        async with asyncio.timeout(5):
            assert (await inbox.get())["last"] is False
        await mailbox.stop()

    asyncio.run(scenario())


def test_no_job_can_be_sent_before_the_reader_runs():
    async def scenario():
        mailbox = Mailbox()
        with pytest.raises(RuntimeError, match="not running"):
            mailbox.reply_channel()
        await mailbox.start()
        assert mailbox.reply_channel() == mailbox.channel_name
        await mailbox.stop()
        await asyncio.sleep(0)  # the reader takes the cancellation
        with pytest.raises(RuntimeError, match="not running"):
            mailbox.reply_channel()

    asyncio.run(scenario())
