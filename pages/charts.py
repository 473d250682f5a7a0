"""Bar charts as plain geometry for the templates to draw as SVG. Pure: no Django.

The server draws every chart, so a page needs no script and no chart library,
and reads the same on a phone (the SVG scales with its viewBox).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stats import ema  # pure maths too: the size at the centre of a bin

WIDTH = 640
HEIGHT = 220
# Room for the y-axis labels on the left and the x-axis labels below.
LEFT = 44
BOTTOM = 24
TOP = 8
# Horizontal gap between groups of bars, as a share of a group's slot.
GROUP_GAP = 0.25


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int  # which series (0, 1, …): the CSS class colours it
    title: str  # shown on hover and read by screen readers


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    bottom_y: float
    bars: tuple[Bar, ...]
    x_labels: tuple[Label, ...]
    y_labels: tuple[Label, ...]
    grid_ys: tuple[float, ...]
    series: tuple[str, ...]  # legend, in series order
    empty: bool


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 4 or 8 times a power of ten that is at least `value`:
    its quarters, the grid lines, read as round numbers (1, 2, 3, 4 rather than 1.25, 2.5)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 8, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # unreachable: 10·power ≥ value by construction


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}" if value < 1 else f"{value:.1f}"


def size_label(size: float) -> str:
    """A model size for an axis: 0.35, 2.8, 8, 45."""
    return f"{size:.2g}" if size < 10 else f"{size:.0f}"


def grouped_bars(
    groups: Sequence[tuple[str, Sequence[float | None]]], *, series: Sequence[str], unit: str, label_every: int = 1
) -> Chart:
    """One group of bars per x label, one bar per series; None draws no bar."""
    values = [v for _, vs in groups for v in vs if v is not None]
    top = nice_max(max(values, default=0))
    plot_width = WIDTH - LEFT
    plot_height = HEIGHT - BOTTOM - TOP
    bottom_y = HEIGHT - BOTTOM
    slot = plot_width / max(len(groups), 1)
    bar_width = slot * (1 - GROUP_GAP) / max(len(series), 1)
    bars, x_labels = [], []
    for i, (label, group_values) in enumerate(groups):
        group_x = LEFT + i * slot + slot * GROUP_GAP / 2
        for s, value in enumerate(group_values):
            if value is None:
                continue
            height = plot_height * value / top
            title = f"{label}: {_number(value)} {unit}" + (f" ({series[s]})" if len(series) > 1 else "")
            bars.append(Bar(round(group_x + s * bar_width, 2), round(bottom_y - height, 2), round(bar_width, 2), round(height, 2), s, title))
        if i % label_every == 0:
            x_labels.append(Label(round(LEFT + (i + 0.5) * slot, 2), HEIGHT - 6, label))
    grid = tuple(round(bottom_y - plot_height * k / 4, 2) for k in range(1, 5))
    y_labels = tuple(Label(LEFT - 6, y + 4, _number(top * k / 4)) for k, y in zip(range(1, 5), grid))
    return Chart(
        WIDTH, HEIGHT, LEFT, bottom_y, tuple(bars), tuple(x_labels), y_labels, grid, tuple(series), empty=not values
    )


def speed_chart(speeds: Mapping[int, float], medians: Mapping[int, float]) -> Chart:
    """A worker's tokens/s in each size bin it was measured in, beside the network's median."""
    return grouped_bars(
        [(size_label(ema.bin_size(b)), [speeds[b], medians.get(b)]) for b in sorted(speeds)],
        series=["this worker", "network median"],
        unit="tokens/s",
    )
