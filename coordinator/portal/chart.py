"""The study page's charts as SVG geometry: each round's cohort size per hospital, and each held-out metric.

The page draws them as inline SVG (coordinator/portal/templates/_rounds.html); the colours
come from the stylesheet (``series-N`` classes), so the page needs no inline style. All
coordinates are in the SVG's user units, y growing downwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from coordinator.models.studies import StudyPublic

#: Size of the cohort chart (the page's width) and of each metric's chart (two side by side).
WIDTH, HEIGHT = 640.0, 220.0
METRIC_WIDTH, METRIC_HEIGHT = 420.0, 200.0
#: Margins around the plot area: tick labels on the left, round numbers below.
LEFT, RIGHT, TOP, BOTTOM = 52.0, 12.0, 12.0, 30.0
#: Series colours the stylesheet defines (``.series-0`` ... ``.series-7``); more hospitals reuse them.
SERIES = 8
#: Metrics of a round that are not plotted: counts, not measures of the model.
NOT_PLOTTED = frozenset({"examples"})


@dataclass(frozen=True)
class Tick:
    """A horizontal grid line at ``y`` with its value's label."""

    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    """A round's label under the plot, centred on ``x``."""

    x: float
    label: str


@dataclass(frozen=True)
class Bar:
    """One hospital's cohort in one round."""

    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Point:
    """One round's value of a metric."""

    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Chart:
    """A plot area with its axes, and bars or a line."""

    title: str
    ticks: list[Tick]
    x_labels: list[XLabel]
    bars: list[Bar]
    points: list[Point]
    legend: list[tuple[int, str]]
    width: float
    height: float

    @property
    def left(self) -> float:
        """The plot area's left edge."""
        return LEFT

    @property
    def right(self) -> float:
        """The plot area's right edge."""
        return self.width - RIGHT

    @property
    def top(self) -> float:
        """The plot area's top edge (the axis' highest value)."""
        return TOP

    @property
    def bottom(self) -> float:
        """The plot area's bottom edge (the axis' lowest value)."""
        return self.height - BOTTOM

    @property
    def line(self) -> str:
        """The points as an SVG ``points`` attribute."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def short(address: str) -> str:
    """An address shortened for a legend: 0x1234…abcd."""
    return f"{address[:6]}…{address[-4:]}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= value * (1 - 1e-12))


def _label(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"


def _ticks(low: float, high: float, height: float, count: int = 4) -> list[Tick]:
    return [Tick(_y(low + (high - low) * i / count, low, high, height), _label(low + (high - low) * i / count))
            for i in range(count + 1)]


def _y(value: float, low: float, high: float, height: float) -> float:
    return (height - BOTTOM) - (value - low) / (high - low) * (height - BOTTOM - TOP)


def _slot(round_: int, rounds: int, width: float) -> tuple[float, float]:
    """Left edge and width of round ``round_``'s slot (1-based) on the x axis."""
    step = (width - RIGHT - LEFT) / rounds
    return LEFT + (round_ - 1) * step, step


def _x_labels(rounds: int, width: float) -> list[XLabel]:
    every = max(1, math.ceil(rounds / 20))  # at most about 20 labels
    return [XLabel(start + step / 2, str(r)) for r in range(1, rounds + 1) if r == 1 or r % every == 0
            for start, step in [_slot(r, rounds, width)]]


def cohort_chart(study: StudyPublic) -> Chart:
    """Each round's cohort size at each named hospital, as grouped bars (one colour per hospital)."""
    hospitals = [d.hospital for d in study.decisions]
    rounds = max([study.rounds, *(r.round for r in study.round_records)])
    counts = [c.cohort_count for r in study.round_records for c in r.contributions]
    high = nice_ceiling(max(counts, default=0))
    bars = []
    for record in study.round_records:
        start, step = _slot(record.round, rounds, WIDTH)
        bar_width = step * 0.8 / max(1, len(hospitals))
        for contribution in record.contributions:
            index = hospitals.index(contribution.hospital) if contribution.hospital in hospitals else 0
            top = _y(contribution.cohort_count, 0.0, high, HEIGHT)
            bars.append(Bar(x=start + step * 0.1 + index * bar_width, y=top, width=bar_width,
                            height=(HEIGHT - BOTTOM) - top, series=index % SERIES,
                            title=f"round {record.round}: {contribution.cohort_count} records at "
                                  f"{contribution.hospital}"))
    return Chart(title="Cohort size per hospital, round by round", ticks=_ticks(0.0, high, HEIGHT),
                 x_labels=_x_labels(rounds, WIDTH), bars=bars, points=[],
                 legend=[(i % SERIES, short(h)) for i, h in enumerate(hospitals)], width=WIDTH, height=HEIGHT)


def metric_charts(study: StudyPublic) -> list[Chart]:
    """One line per held-out metric (loss, accuracy, ...) over the rounds that have it."""
    rounds = max([study.rounds, *(r.round for r in study.round_records)])
    names = sorted({name for r in study.round_records for name in (r.metrics or {}) if name not in NOT_PLOTTED})
    charts = []
    for name in names:
        values = [(r.round, float(r.metrics[name])) for r in study.round_records
                  if r.metrics and name in r.metrics and math.isfinite(float(r.metrics[name]))]
        if not values:
            continue
        least, most = min(v for _, v in values), max(v for _, v in values)
        if least >= 0.0 and most <= 1.0:
            low, high = 0.0, 1.0  # a fraction (accuracy, AUC): its whole range
        else:
            low = 0.0 if least >= 0.0 else -nice_ceiling(-least)
            high = nice_ceiling(most) if most > 0 else 1.0
        points = []
        for round_, value in values:
            start, step = _slot(round_, rounds, METRIC_WIDTH)
            points.append(Point(start + step / 2, _y(value, low, high, METRIC_HEIGHT),
                                f"round {round_}: {name} {value:.4g}"))
        charts.append(Chart(title=f"Held-out {name}, round by round", ticks=_ticks(low, high, METRIC_HEIGHT),
                            x_labels=_x_labels(rounds, METRIC_WIDTH), bars=[], points=points, legend=[],
                            width=METRIC_WIDTH, height=METRIC_HEIGHT))
    return charts
