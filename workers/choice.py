"""Ranking the free connections that fit a job. Pure: no Django.

The order today: connections whose GPU memory comfortably fits ("good", the
original's strict `<` with no margin) before those that fit within 20% ("close"),
then a worker that already has the model loaded, then one that lists it, then
the rest in random order so load spreads. The stats issue replaces the tail of
the key with the EMA estimate behind this same function.
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    connection_id: int
    channel_name: str
    worker_id: int
    is_web: bool
    gpu_memory_mib: float
    current_model: str
    models: tuple[str, ...]


def rank(candidates: list[Candidate], *, gpu_needed_mib: float, model: str, rng: random.Random | None = None) -> list[Candidate]:
    rng = rng or random.Random()
    keyed = []
    for c in candidates:
        good = c.gpu_memory_mib == 0 or c.gpu_memory_mib > gpu_needed_mib
        keyed.append(
            (not good, c.current_model != model, model not in c.models, rng.random(), c)
        )
    keyed.sort(key=lambda k: k[:4])
    return [k[-1] for k in keyed]
