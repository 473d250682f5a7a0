"""Shutdown hand-overs: the lifespan shutdown writes pending records, and a failed
SIGTERM drain still stops the server."""

import asyncio

from queenbee_site.lifespan import lifespan
from workers.liveness import ProcessRegistry, registry


def test_the_lifespan_shutdown_writes_pending_records_before_completing(monkeypatch):
    events = []

    async def hook():
        await asyncio.sleep(0.01)
        events.append("written")

    monkeypatch.setattr(registry, "drain_hooks", [hook])
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive():
        return next(incoming)

    async def send(message):
        events.append(message["type"])

    asyncio.run(lifespan({"type": "lifespan"}, receive, send))
    assert events == ["lifespan.startup.complete", "written", "lifespan.shutdown.complete"]


def test_a_drain_that_fails_still_hands_over_to_the_server(monkeypatch):
    stopped = []
    process = ProcessRegistry()

    async def broken_drain():
        raise ConnectionError("the database went away mid-drain")

    monkeypatch.setattr(process, "_drain", broken_drain)
    monkeypatch.setattr(process, "_stop_server", lambda: stopped.append(True))
    asyncio.run(process.shutdown())
    assert stopped == [True] and process.stopping
