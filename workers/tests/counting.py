"""Counting every query of an async path with `django_assert_num_queries`.

The hot path queries on runtime.db's shared threads, each with its own
connection, while django_assert_num_queries counts the connection of the test's
thread. `OnTestThread` runs the async path on an event loop of its own thread
and every call bound for the database threads here, on the test's thread, in
the order they were made: the code under test is the real one, only the thread
that runs its database calls changes.
"""

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from runtime import db

_END, _FAILED = object(), object()


class OnTestThread:
    def __init__(self, monkeypatch) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        # Functions wrapped by on_db_threads keep the executor they first saw:
        # its `submit` is what changes.
        monkeypatch.setattr(db.db_threads(), "submit", self._submit)

    def _submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def phase(self) -> None:
        """From the event loop: the calls made so far belong to the phase that ends here."""
        self._calls.put(_END)

    def start(self, main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run `main()` on an event loop in another thread; `serve()` its database calls."""
        self._error: BaseException | None = None

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                self._error = exc
                self._calls.put(_FAILED)
            finally:
                self._calls.put(_END)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def serve(self) -> None:
        """Run the database calls on this thread until the loop ends a phase (or
        ends); what the loop raised is raised here."""
        while (call := self._calls.get(timeout=30)) is not _END:
            if call is _FAILED:
                self._thread.join()
                raise self._error
            future, fn, args, kwargs = call
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

    def finish(self) -> None:
        """Serve what is left, and raise what the loop raised."""
        self.serve()
        self._thread.join()
        if self._error is not None:
            raise self._error
