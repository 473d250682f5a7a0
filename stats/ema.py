"""The arithmetic of worker stats. Pure: no Django.

A worker's speed is an exponential moving average (EMA) of seconds per weighted
token, kept per model-size *bin*. This module holds the update rule, the binning,
the estimate for a size (with extrapolation from the nearest bins), the
count-weighted merge used by imports, the skewed pick and the conversion to and
from the original coordinator's bins. README "Worker stats" explains the choices.
"""

import math
from collections.abc import Mapping

# Sizes are "roughly GB of weights" (api.model_names); anything smaller than
# this is binned as this, so a size of 0 cannot break the logarithm.
MIN_SIZE = 0.01
# Bins per doubling of the size. Two makes each bin span a factor of √2 (±19%
# around its centre): seconds per token grow about linearly with size, so jobs
# sharing a bin differ by less than the noise between two runs of one job.
BINS_PER_DOUBLING = 2
# Extrapolating from one side: time per token ~ size**exponent. Generation is
# memory-bound (each token reads every weight once), so the honest exponent is
# about 1. Going *down* we use less, because a fixed per-token overhead does not
# shrink with the model; going *up* we use more, because a larger model may spill
# out of VRAM onto the CPU, and over-promising a worker costs callers time.
DOWN_EXPONENT = 0.8
UP_EXPONENT = 1.5


def update(old: float | None, sample: float, *, alpha: float) -> float:
    """One EMA step: the first sample sets the value, later ones move it by 1 - alpha."""
    if old is None:
        return sample
    return alpha * old + (1 - alpha) * sample


def weighted_tokens(
    *, prompt_tokens: int, completion_tokens: int, prompt_weight: float, completion_weight: float
) -> float:
    return prompt_tokens * prompt_weight + completion_tokens * completion_weight


def size_bin(size: float) -> int:
    """The bin of a model size: round(2·log2(size)). 4 → 4, 7.8 → 6, 0.16 → -5."""
    position = BINS_PER_DOUBLING * math.log2(max(size, MIN_SIZE))
    return math.floor(position + 0.5)  # half up, unlike round()'s half-to-even


def bin_size(bin: int) -> float:
    """The size at the centre of a bin."""
    return 2 ** (bin / BINS_PER_DOUBLING)


def estimate(bins: Mapping[int, float], size: float) -> float | None:
    """Seconds per weighted token expected at `size`, from one worker's bins.

    The bin of `size` if measured; else, between two measured bins, interpolated
    on a log-log line through the nearest on each side; else scaled from the
    nearest bin by (size / its centre) ** DOWN_EXPONENT or UP_EXPONENT. None when
    there are no bins at all (the caller falls back to the cluster's).
    """
    if not bins:
        return None
    target = size_bin(size)
    if target in bins:
        return bins[target]
    below = max((b for b in bins if b < target), default=None)
    above = min((b for b in bins if b > target), default=None)
    if below is not None and above is not None and bins[below] > 0 and bins[above] > 0:
        position = BINS_PER_DOUBLING * math.log2(max(size, MIN_SIZE))
        share = (position - below) / (above - below)
        return math.exp(math.log(bins[below]) + share * (math.log(bins[above]) - math.log(bins[below])))
    if below is not None and (above is None or target - below <= above - target):
        return bins[below] * (max(size, MIN_SIZE) / bin_size(below)) ** UP_EXPONENT
    return bins[above] * (max(size, MIN_SIZE) / bin_size(above)) ** DOWN_EXPONENT


def merge(value: float | None, count: int, other_value: float, other_count: int) -> tuple[float, int]:
    """Count-weighted mean of two estimates of the same thing (imports)."""
    if value is None or count <= 0:
        return other_value, other_count
    total = count + other_count
    return (value * count + other_value * other_count) / total, total


def skewed_index(n: int, r: float) -> int:
    """The original coordinator's pick: index int(max(r² − ½, 0)·2n) of a list sorted best first.

    With r uniform in [0, 1) the best is picked with probability √(½ + 1/(2n))
    (0.87 of two, 0.82 of three, 0.71 of many) and every other with about the
    same small share, so load spreads and slower workers keep being re-measured.
    """
    if n <= 1:
        return 0
    return min(int(max(r * r - 0.5, 0.0) * 2 * n), n - 1)


# --- The original coordinator's bins (reference §9.2) --------------------------------


def original_bin(size: float) -> int:
    """The original's bin: int(round(sqrt(size))), Python's half-to-even rounding."""
    return int(round(math.sqrt(max(size, 0.0))))


def size_of_original_bin(bin: int) -> float:
    """The size the original treats a bin as (its extrapolation uses bin²); bin 0 holds sizes below ¼."""
    return bin * bin if bin > 0 else 0.125
