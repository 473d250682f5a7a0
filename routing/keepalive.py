"""SSE keep-alive comments while a stream waits.

A stream is silent while its worker downloads or loads a model (minutes) and
while it thinks between tokens; a proxy in front of Queenbee closes a connection
idle past its read timeout (nginx's `proxy_read_timeout` is 60 s). A comment line
(`: keep-alive`) every `interval` seconds keeps it open, and SSE clients (the
OpenAI SDKs, httpx-sse, browsers' EventSource) ignore comments.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

KEEPALIVE = ": keep-alive\n\n"


async def awaiting(aw: Awaitable[Any], *, interval: float) -> AsyncIterator[Any]:
    """Yield KEEPALIVE for every `interval` seconds that `aw` is still running,
    then its result (its exception is raised). Closing the iterator cancels `aw`."""
    if not interval:
        yield await aw
        return
    task = asyncio.ensure_future(aw)
    try:
        while not (await asyncio.wait({task}, timeout=interval))[0]:
            yield KEEPALIVE
    finally:
        if not task.done():
            task.cancel()
    yield task.result()


async def frames(frames: AsyncIterator[dict[str, Any]], *, interval: float) -> AsyncIterator[list[dict[str, Any]] | str]:
    """The frames of a stream until its `{}` end, in lists of those that had
    arrived together, with KEEPALIVE for each `interval` seconds without one.
    Closing the iterator stops reading `frames`.

    One task per stream reads `frames` into a queue, and the wait on the queue is
    what times out: a wait on `frames` itself cannot be given up without ending
    it, and a task per frame cost 25 times the frame's own relay (measured).
    Frames that wait in the queue together are taken together, so the relay
    writes them in one send: a worker streams faster than one socket write
    per token when the server is busy.
    """
    if not interval:
        async for frame in frames:
            if not frame:
                return
            yield [frame]
        return
    queue: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
    reader = asyncio.ensure_future(_read_into(frames, queue))
    try:
        while True:
            item = queue.get_nowait() if not queue.empty() else await _get(queue, interval)
            if item is None:
                yield KEEPALIVE
                continue
            batch: list[dict[str, Any]] = []
            while True:
                if isinstance(item, Exception):
                    if batch:  # what arrived before the failure is delivered first
                        yield batch
                    raise item
                if not item:
                    if batch:
                        yield batch
                    return
                batch.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
    finally:
        reader.cancel()


async def _read_into(frames: AsyncIterator[dict[str, Any]], queue: asyncio.Queue) -> None:
    try:
        async for frame in frames:
            queue.put_nowait(frame)
        queue.put_nowait({})
    except Exception as exc:  # FrameTimeout, WorkerGone…: raised where the frames are read
        queue.put_nowait(exc)


async def _get(queue: asyncio.Queue, interval: float) -> Any:
    """The next item, or None after `interval` seconds (a cancelled get loses nothing)."""
    try:
        async with asyncio.timeout(interval):
            return await queue.get()
    except TimeoutError:
        return None
