"""Line charts (a resource's metrics, a QKD link's history), drawn by the server as inline
SVG (no JavaScript).

Each chart is a view model: polylines in a 0..WIDTH x 0..HEIGHT box (y grows downwards),
the top of the scale, the axes' labels (values with their unit, the times at both ends) and
the latest value of each series for the text alternative.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from slices_blueprint.telemetry.schemas import MetricPoint

WIDTH, HEIGHT = 300, 80
KIB = 1024


@dataclass(frozen=True)
class Line:
    label: str
    points: str  # SVG polyline "x,y x,y ..."
    latest: float | None


class Timed(Protocol):
    @property
    def at(self) -> dt.datetime: ...


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    top: float
    lines: list[Line]
    threshold: float | None = None  # a limit drawn as a dashed horizontal line
    key: str = ""  # names the chart in the page (data-chart)
    start: dt.datetime | None = None  # the time axis, left to right
    end: dt.datetime | None = None

    @property
    def y_ticks(self) -> list[tuple[str, str]]:
        """The value axis: (height in the box, label) at 0, half and the top of the scale."""
        return [(f"{HEIGHT * (1 - v / self.top):.1f}", _fmt(v)) for v in (0.0, self.top / 2, self.top)]

    @property
    def x_labels(self) -> tuple[str, str] | None:
        """The time axis: its ends as HH:MM (UTC)."""
        if self.start is None or self.end is None:
            return None
        return f"{self.start:%H:%M}", f"{self.end:%H:%M} UTC"

    @property
    def summary(self) -> str:
        """The chart in words (its accessible name)."""
        latest = ", ".join(f"{line.label} {_fmt(line.latest)} {self.unit}" for line in self.lines)
        limit = f"; threshold {_fmt(self.threshold)} {self.unit}" if self.threshold is not None else ""
        return f"{self.title}: now {latest}{limit}; scale up to {_fmt(self.top)} {self.unit}"

    @property
    def threshold_y(self) -> str | None:
        """The threshold's height in the chart's box."""
        return None if self.threshold is None else f"{HEIGHT * (1 - self.threshold / self.top):.1f}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


Getter = Callable[[Any], float | None]


def line_chart(title: str, unit: str, points: Sequence[Timed], start: dt.datetime, span_s: float,
               series: list[tuple[str, Getter]], floor: float, *, threshold: float | None = None,
               key: str = "") -> Chart:
    """A chart of ``series`` (label, value of a point) over ``points`` on a time axis of
    ``span_s`` seconds from ``start``; the scale reaches at least ``floor`` (and the threshold)."""
    values = [[get(p) for p in points] for _, get in series]
    top = max([floor, threshold or 0.0, *(v for vs in values for v in vs if v is not None)]) * 1.1
    lines = []
    for (label, _), vs in zip(series, values, strict=True):
        coords = [
            f"{WIDTH * (p.at - start).total_seconds() / span_s:.1f},{HEIGHT * (1 - v / top):.1f}"
            for p, v in zip(points, vs, strict=True) if v is not None
        ]
        latest = next((v for v in reversed(vs) if v is not None), None)
        lines.append(Line(label, " ".join(coords), latest))
    return Chart(title, unit, top, lines, threshold, key, start, start + dt.timedelta(seconds=span_s))


def chart_start(points: Sequence[Timed], minutes: int, now: dt.datetime) -> dt.datetime:
    """Where the time axis starts: ``minutes`` ago, or the first point when the data is younger
    (a new VM's chart then fills the width)."""
    window_start = now - dt.timedelta(minutes=minutes)
    return max(window_start, points[0].at) if points else window_start


def metric_charts(points: list[MetricPoint], start: dt.datetime, now: dt.datetime) -> list[Chart]:
    """CPU, memory, network and disk charts of ``points`` on a time axis from ``start`` to ``now``."""
    span_s = max((now - start).total_seconds(), 1.0)

    def kib(getter: Getter) -> Getter:
        return lambda p: None if getter(p) is None else getter(p) / KIB  # type: ignore[operator]

    charts = [
        line_chart("CPU", "%", points, start, span_s, [("used", lambda p: p.cpu_percent)], 10),
        line_chart("Memory", "MiB", points, start, span_s, [("resident", lambda p: p.memory_mib)], 16),
        line_chart("Network", "KiB/s", points, start, span_s, [
            ("received", kib(lambda p: p.net_rx_bytes_per_s)),
            ("sent", kib(lambda p: p.net_tx_bytes_per_s))], 1),
        line_chart("Disk", "KiB/s", points, start, span_s, [
            ("read", kib(lambda p: p.disk_read_bytes_per_s)),
            ("written", kib(lambda p: p.disk_write_bytes_per_s))], 1),
    ]
    return [c for c in charts if any(line.points for line in c.lines)]
