"""Ranking the free connections that fit a job. Pure: no Django.

Candidates fall into groups, tried in this order:
1. not punished, fitting GPU memory comfortably ("good", the original's strict
   `<` with no margin), proven;
2. the same but unproven (no successful job yet): only a last resort, except that
   with probability `unproven_share` the unproven go first, so a new worker gets
   a small share of traffic and proves itself;
3. fitting within 20% ("close"), in the same proven/unproven order;
4. punished workers, only when nothing else is free.
Within a group, candidates are sorted by estimated cost: seconds per token for
this size (stats) times a factor for loading the model, and one is drawn with
the original's skewed pick (stats.ema.skewed_index): usually the best, sometimes
another, so load spreads and every worker keeps being measured. The rest follow
in order, for the caller to try if the drawn one is taken meanwhile.
"""

import random
from typing import NamedTuple

from stats.ema import skewed_index

# Cost factors for a worker that must load the model from its disk, or download
# it first. A loaded worker wins unless another is clearly faster per token: the
# load is paid once, but a first job waits for all of it.
LISTED_FACTOR = 1.5
DOWNLOAD_FACTOR = 3.0
# One generator per process: seeding a new one from os.urandom on every request
# showed up in the profile.
_rng = random.Random()


class Candidate(NamedTuple):  # a tuple: built 64 times per claim, a frozen dataclass cost 3x more
    connection_id: int
    channel_name: str
    worker_id: int
    is_web: bool
    gpu_memory_mib: float
    current_model: str
    models: tuple[str, ...]
    estimate: float | None = None  # seconds per token (or image); None: nobody measured yet
    punished: bool = False
    proven: bool = True


def cost(c: Candidate, *, model: str) -> float:
    """Expected seconds per token. Unmeasured counts as 0: try it, and it gets measured."""
    factor = 1.0 if c.current_model == model else LISTED_FACTOR if model in c.models else DOWNLOAD_FACTOR
    return (c.estimate or 0.0) * factor


def rank(
    candidates: list[Candidate],
    *,
    gpu_needed_mib: float,
    model: str,
    unproven_share: float = 0.0,
    rng: random.Random | None = None,
) -> list[Candidate]:
    rng = rng or _rng
    unproven_first = rng.random() < unproven_share
    keyed = []
    for c in candidates:
        good = c.gpu_memory_mib == 0 or c.gpu_memory_mib > gpu_needed_mib
        group = (c.punished, not good, c.proven == unproven_first)
        keyed.append((group, cost(c, model=model), rng.random(), c))
    keyed.sort(key=lambda k: k[:3])
    if not keyed:
        return []
    best_group = [k for k in keyed if k[0] == keyed[0][0]]
    picked = keyed.pop(skewed_index(len(best_group), rng.random()))
    return [picked[-1]] + [k[-1] for k in keyed]
