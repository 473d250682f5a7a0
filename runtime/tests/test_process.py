"""The process runtime: its tasks start once, in order, on the loop that serves,
and stop in the drain's order, whatever a step does."""

import asyncio

import pytest

from runtime.asgi import serving
from runtime.process import Process, State, Stop, Task, process


def recording(events: list, name: str, *, fail: bool = False, seconds: float = 0.0):
    async def step():
        events.append(name)
        await asyncio.sleep(seconds)
        if fail:
            raise ConnectionError(f"{name}: the database went away")

    return step


def test_tasks_start_once_in_order_however_many_first_requests_race():
    events = []
    runtime = Process()
    runtime.register(Task(name="late", order=20, start=recording(events, "late", seconds=0.01)))
    runtime.register(Task(name="early", order=10, start=recording(events, "early", seconds=0.01)))

    async def scenario():
        await asyncio.gather(*(runtime.start() for _ in range(5)))
        assert runtime.running

    asyncio.run(scenario())
    assert events == ["early", "late"]


def test_a_task_that_cannot_start_leaves_the_others_running(caplog):
    events = []
    runtime = Process()
    runtime.register(Task(name="broken", order=1, start=recording(events, "broken", fail=True)))
    runtime.register(Task(name="fine", order=2, start=recording(events, "fine")))
    asyncio.run(runtime.start())
    assert events == ["broken", "fine"] and runtime.state is State.RUNNING
    assert "could not start the process task broken" in caplog.text


def test_stop_refuses_new_work_before_the_first_step_then_runs_the_steps_in_order():
    events = []
    runtime = Process()

    async def refuse():
        events.append(("refuse", runtime.stopping))

    runtime.register(Task(name="flush", order=Stop.FLUSH, stop=recording(events, "flush")))
    runtime.register(Task(name="write", order=Stop.WRITE, stop=recording(events, "write")))
    runtime.register(Task(name="refuse", order=Stop.REFUSE, stop=refuse))
    runtime.register(Task(name="finish", order=Stop.FINISH, stop=recording(events, "finish")))

    async def scenario():
        await runtime.start()
        await runtime.stop()

    asyncio.run(scenario())
    assert events == [("refuse", True), "finish", "write", "flush"]
    assert runtime.state is State.STOPPED


def test_a_step_that_fails_or_hangs_is_logged_and_the_next_still_runs(caplog):
    events = []
    runtime = Process()
    runtime.register(Task(name="fails", order=1, stop=recording(events, "fails", fail=True)))
    runtime.register(Task(name="hangs", order=2, stop=recording(events, "hangs", seconds=30), stop_timeout=0.05))
    runtime.register(Task(name="writes", order=3, stop=recording(events, "writes")))

    async def scenario():
        await runtime.start()
        await runtime.stop()

    asyncio.run(scenario())
    assert events == ["fails", "hangs", "writes"]
    assert "the stop step fails failed" in caplog.text and "the stop step hangs did not end" in caplog.text


def test_a_drain_that_fails_still_hands_over_to_the_server(monkeypatch):
    stopped = []
    runtime = Process()
    runtime.register(Task(name="fails", order=1, stop=recording([], "fails", fail=True)))
    monkeypatch.setattr(runtime, "_stop_server", lambda: stopped.append(runtime.state))

    async def scenario():
        await runtime.start()
        await runtime.shutdown()
        await runtime.shutdown()  # a second SIGTERM while draining: nothing more

    asyncio.run(scenario())
    assert stopped == [State.STOPPED]


def test_a_process_stopped_before_it_served_never_starts_its_tasks():
    events = []
    runtime = Process()
    runtime.register(Task(name="loop", order=1, start=recording(events, "started"), stop=recording(events, "stopped")))

    async def scenario():
        await runtime.stop()
        await runtime.start()

    asyncio.run(scenario())
    assert events == [] and runtime.stopping


def test_a_task_registered_after_the_start_is_refused():
    runtime = Process()
    asyncio.run(runtime.start())
    with pytest.raises(RuntimeError, match="after the process started"):
        runtime.register(Task(name="late", order=1))


def test_the_first_request_starts_the_runtime_before_the_application_sees_it():
    events = []
    runtime = Process()
    runtime.register(Task(name="loop", order=1, start=recording(events, "started")))

    async def app(scope, receive, send):
        events.append(scope["type"])

    application = serving(app, runtime=runtime)

    async def scenario():
        await application({"type": "websocket"}, None, None)
        await application({"type": "http"}, None, None)

    asyncio.run(scenario())
    assert events == ["started", "websocket", "http"]


def test_the_lifespan_starts_the_runtime_and_its_shutdown_runs_the_steps_before_completing():
    events = []
    runtime = Process()
    runtime.register(Task(name="recorder", order=Stop.WRITE, start=recording(events, "started"), stop=recording(events, "written", seconds=0.01)))
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive():
        return next(incoming)

    async def send(message):
        events.append(message["type"])

    async def never_called(scope, receive, send):
        raise AssertionError("the lifespan is the runtime's, not the application's")

    asyncio.run(serving(never_called, runtime=runtime)({"type": "lifespan"}, receive, send))
    assert events == ["started", "lifespan.startup.complete", "written", "lifespan.shutdown.complete"]


def test_a_lifespan_shutdown_after_the_sigterm_drain_runs_the_steps_again(monkeypatch):
    """uvicorn lets the requests still open end between the two: their records are written too."""
    written = []
    runtime = Process()
    runtime.register(Task(name="recorder", order=Stop.WRITE, stop=recording(written, "written")))
    monkeypatch.setattr(runtime, "_stop_server", lambda: None)

    async def scenario():
        await runtime.start()
        await runtime.shutdown()
        await runtime.stop()

    asyncio.run(scenario())
    assert written == ["written", "written"]


def test_the_apps_register_the_drain_in_its_order():
    """Refuse work, let jobs finish, send workers away, write the records, flush the outbox."""
    stops = [(task.order, task.name) for task in process.ordered() if task.stop is not None]
    names = [name for _, name in stops]
    assert [order for order, _ in stops] == sorted(order for order, _ in stops)
    assert names.index("workers.leave-pool") < names.index("workers.running-jobs") < names.index("workers.heartbeat")
    assert names.index("workers.heartbeat") < names.index("routing.recorder")
    assert {"finetune.scheduler", "trust.canaries"} <= {name for order, name in stops if order == Stop.LOOPS}
    assert names.index("workers.leave-pool") < names.index("finetune.scheduler")
    starts = {task.name for task in process.ordered() if task.start is not None}
    assert {"workers.mailbox", "workers.heartbeat", "finetune.scheduler", "trust.canaries"} <= starts


def test_a_runtime_whose_loop_closed_starts_again_on_the_next():
    events = []
    runtime = Process()
    runtime.register(Task(name="reader", order=0, start=recording(events, "reader")))
    asyncio.run(runtime.start())
    assert not runtime.running  # its loop is closed, and its tasks with it
    asyncio.run(runtime.start())
    assert events == ["reader", "reader"]
