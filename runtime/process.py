"""This process's runtime: every per-process task, started in one place and
stopped in one order, with the SIGTERM drain.

Apps register their tasks from `AppConfig.ready` (`process.register(Task(...))`);
this module imports no app. The runtime starts them on the first event loop it
sees serving: uvicorn's lifespan startup, or, since daphne sends no lifespan
events, the first HTTP request or websocket (runtime/asgi.py). Each task's
`start` runs there, in `order`, and the SIGTERM handler is installed on that loop.

Stopping (SIGTERM, uvicorn's lifespan shutdown, or a test) first sets
`stopping`: from then on the process takes no new work (the API answers 503,
claims are refused, the loops skip their ticks). Then the stop steps run one
after the other, in `order` (see `Stop`), each bounded by its `stop_timeout`;
one that fails is logged and the next still runs. After a SIGTERM the runtime
hands over to the server's own shutdown.

A step may run twice: under uvicorn the SIGTERM drain hands over to uvicorn,
which lets the requests still open end before its lifespan shutdown runs the
steps again, and those requests' jobs have records to write. So every step is
safe to run again (the second run does what the first left).
"""

import asyncio
import enum
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# A stop step that declares no timeout of its own gets this long: it writes what
# is in memory, and the whole drain must end within a container's stop grace.
STOP_TIMEOUT = 3.0


class Stop(enum.IntEnum):
    """The drain's phases, in the order they run. A task's `order` names its phase."""

    REFUSE = 10  # the process's workers leave the pool: no claim anywhere picks them
    LOOPS = 15  # the loops start nothing new (a pass under way ends first)
    FINISH = 20  # let the jobs running here finish (up to SHUTDOWN_GRACE)
    DISCONNECT = 30  # send the workers away; forget the process's row
    WRITE = 40  # write what finished jobs left in memory (the job recorder)
    FLUSH = 50  # deliver what the writes queued (the billing outbox)


@dataclass(frozen=True)
class Task:
    """One per-process task. `start` (quick: it creates the task's loop) runs once
    the process serves; `stop` runs in the drain. Either may be omitted."""

    name: str
    order: int
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    # None: the step bounds its own wait (the jobs' SHUTDOWN_GRACE).
    stop_timeout: float | None = STOP_TIMEOUT


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Process:
    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.state = State.NEW
        self.loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Future | None = None
        self._stopping: asyncio.Lock | None = None
        # The server's own SIGTERM handler, called once the drain is done.
        self._server_sigterm = None

    @property
    def stopping(self) -> bool:
        """True from the moment the process stops taking new work."""
        return self.state in (State.STOPPING, State.STOPPED)

    @property
    def running(self) -> bool:
        """Started, on a loop that still runs (a test's `asyncio.run` closes its loop,
        and the tasks died with it: the next loop starts them again)."""
        return self.state is State.RUNNING and not (self.loop is not None and self.loop.is_closed())

    def register(self, task: Task) -> None:
        """Add a task (from an AppConfig.ready). Registering a name again replaces it."""
        if self.state is not State.NEW:
            raise RuntimeError(f"task {task.name!r} registered after the process started")
        self.tasks[task.name] = task

    def ordered(self) -> list[Task]:
        return sorted(self.tasks.values(), key=lambda task: task.order)

    async def start(self) -> None:
        """Start every task on the running loop, once; concurrent callers wait for it.

        A loop that closed (a test's `asyncio.run`) leaves the runtime to start
        again on the next one; a second live loop is a mistake.
        """
        loop = asyncio.get_running_loop()
        if self.loop is not None and self.loop is not loop:
            if not self.loop.is_closed():
                raise RuntimeError("the process runtime already runs on another event loop")
            self.state, self._starting, self._stopping = State.NEW, None, None
        if self.state is not State.NEW and self._starting is None:
            return  # stopped before it ever started: stay stopped
        if self._starting is None:
            self.loop = loop
            self._stopping = asyncio.Lock()
            self._starting = loop.create_task(self._start_all(), name="process-start")
        await asyncio.shield(self._starting)

    async def _start_all(self) -> None:
        self._install_sigterm()
        for task in self.ordered():
            if task.start is not None:
                try:
                    await task.start()
                except Exception:
                    log.exception("could not start the process task %s", task.name)
        if self.state is State.NEW:
            self.state = State.RUNNING

    async def stop(self) -> None:
        """Take no new work, then run the stop steps in order (again, if they ran before)."""
        if self.state is State.NEW:
            self.state = State.STOPPED  # never served: nothing to drain, nothing to start later
            return
        if self._starting is not None:
            await asyncio.shield(self._starting)
        self.state = State.STOPPING
        async with self._stopping:
            for task in self.ordered():
                if task.stop is not None:
                    await self._run_step(task)
            self.state = State.STOPPED

    async def _run_step(self, task: Task) -> None:
        try:
            async with asyncio.timeout(task.stop_timeout):
                await task.stop()
        except TimeoutError:
            log.error("the stop step %s did not end within %s s; going on", task.name, task.stop_timeout)
        except Exception:
            log.exception("the stop step %s failed; going on", task.name)

    async def shutdown(self) -> None:
        """SIGTERM: the drain (`stop`), then the server's own shutdown, once."""
        if self.stopping:
            return
        try:
            await self.stop()
        finally:
            self._stop_server()

    def _install_sigterm(self) -> None:
        try:
            self._server_sigterm = signal.getsignal(signal.SIGTERM)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(self.shutdown()))
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (uvloop: ValueError), or no signals
            pass

    def _stop_server(self) -> None:
        """Hand over to the server's own shutdown: stop twisted's reactor under
        daphne (its signal handler is not Python's), or call the handler the
        server installed (uvicorn: close listeners, wait for open requests, exit)."""
        reactor = sys.modules.get("twisted.internet.reactor")
        if reactor is not None and reactor.running:
            reactor.stop()
        elif callable(self._server_sigterm):
            self._server_sigterm(signal.SIGTERM, None)
        else:  # no server handler: end the process as SIGTERM would have
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)


process = Process()
