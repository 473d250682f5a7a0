"""The embedded channel layer still expires messages, only less often."""

import asyncio

from queenbee_site import layers


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
