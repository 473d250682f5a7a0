"""A per-process loop that does one pass, then waits to be woken or for its
interval, until it is stopped: the fine-tune scheduler, the trust canaries and
the billing outbox are each one. And `retried`: one call, tried until it works.

Its `start` and `stop` are what the loop registers with the process runtime.
A stop lets the pass under way end (a pass holds claims and leases that a
cancellation would leave to expire), then the loop ends; the runtime's stop
timeout bounds the wait. A pass that fails is logged and the loop goes on (the
database or the backend may be back by the next one).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, *, run: Callable[[], Awaitable[None]], wait: Callable[[], Awaitable[float]], first_wait: bool = False):
        """`run` is one pass; `wait` says how many seconds to wait after it (at
        most: `wake()` cuts it short); `first_wait` waits before the first pass."""
        self.name = name
        self._run = run
        self._wait = wait
        self._first_wait = first_wait
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._stopped = False
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    def wake(self) -> None:
        """Do a pass now rather than after the wait (nothing if not running)."""
        if self.running:
            self._wake.set()

    async def stop(self) -> None:
        """Let the pass under way end, then end the loop."""
        self._stopped = True
        self._wake.set()
        if self.running:
            await self._task

    async def _loop(self) -> None:
        if self._first_wait:
            await self._pause()
        while not self._stopped:
            try:
                await self._run()
            except Exception:
                log.warning("%s: a pass failed", self.name, exc_info=True)
            await self._pause()

    async def _pause(self) -> None:
        try:
            seconds = await self._wait()
        except Exception:
            log.warning("%s: could not work out the wait", self.name, exc_info=True)
            seconds = 1.0
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()


async def retried(call: Callable[[], Awaitable[T]], *, pause: float, what: str) -> T:
    """`call()`'s result, calling it again after `pause` seconds each time it fails
    (a channel layer's Redis restarting): for readers that must outlive an outage.
    A cancellation is never retried."""
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("%s failed; retrying", what, exc_info=True)
            await asyncio.sleep(pause)
