"""SSE keep-alive comments while a stream waits.

A stream is silent while its worker downloads or loads a model (minutes) and
while it thinks between tokens; a proxy in front of Queenbee closes a connection
idle past its read timeout (nginx's `proxy_read_timeout` is 60 s). A comment line
(`: keep-alive`) every `interval` seconds keeps it open, and SSE clients (the
OpenAI SDKs, httpx-sse, browsers' EventSource) ignore comments.
"""

import asyncio
from contextlib import aclosing
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


async def frames(frames: AsyncIterator[dict[str, Any]], *, interval: float) -> AsyncIterator[dict[str, Any] | str]:
    """The frames of a stream until its `{}` end, with KEEPALIVE for each `interval`
    seconds without one."""
    while True:
        async with aclosing(awaiting(anext(frames, {}), interval=interval)) as waiting:
            async for frame in waiting:
                if isinstance(frame, str):
                    yield frame
        if not frame:
            return
        yield frame
