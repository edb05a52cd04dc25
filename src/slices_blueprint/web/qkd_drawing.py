"""A QKD network as the UI shows it: its nodes placed on an ellipse with the links between
them (an SVG drawn by the server), and each link's charts from its samples."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from slices_blueprint.qkd.models import QkdLinkSample
from slices_blueprint.qkd.physics import QBER_THRESHOLD
from slices_blueprint.qkd.schemas import LinkOut, NetworkOut
from slices_blueprint.web.charts import Chart, chart_start, line_chart

WIDTH, HEIGHT = 760, 380  # the ellipse's box; the drawing is cropped to its nodes and labels
MARGIN_X, MARGIN_Y = 160, 80
TOP, LABELS = 50, 85  # room above the highest node (a link's label), below the lowest (its own)
RATE_UNITS = ((1e6, "Mb/s"), (1e3, "kb/s"), (1.0, "b/s"))


@dataclass(frozen=True)
class DrawnNode:
    name: str
    kme_url: str
    saes: list[str]
    x: float
    y: float


@dataclass(frozen=True)
class Drawing:
    nodes: list[DrawnNode]
    links: list[DrawnLink]
    height: float
    width: float = WIDTH


@dataclass(frozen=True)
class DrawnLink:
    name: str
    state: str
    label: str  # the state in words, on the line
    title: str  # the tooltip: state, reason, figures
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def mid(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2


def bitrate(bps: float) -> str:
    """``14.6 Mb/s``, ``820.0 kb/s``, ``0 b/s``."""
    scale, unit = rate_unit(bps)
    return f"{bps / scale:.1f} {unit}" if bps else "0 b/s"


def rate_unit(bps: float) -> tuple[float, str]:
    return next((s, u) for s, u in RATE_UNITS if bps >= s or s == 1.0)


def threshold(link: LinkOut) -> float:
    """The QBER above which the link's protocol yields no key."""
    return QBER_THRESHOLD[link.parameters.get("protocol", "bb84-decoy")]


def link_label(link: LinkOut) -> str:
    if link.state == "generating":
        return f"generating, {bitrate(link.secret_key_rate_bps)}"
    return f"stopped, QBER {link.qber:.3f}"


def drawing(network: NetworkOut) -> Drawing:
    """The nodes on an ellipse (the first at the left, then clockwise) and the links between,
    cropped to their height (two nodes make one row)."""
    saes: dict[str, list[str]] = {n.name: [] for n in network.nodes}
    for sae in network.saes:
        saes[sae.node].append(sae.sae_id)
    rx, ry = WIDTH / 2 - MARGIN_X, HEIGHT / 2 - MARGIN_Y
    angles = [math.pi + 2 * math.pi * i / len(network.nodes) for i in range(len(network.nodes))]
    ys = [ry * math.sin(a) for a in angles]
    shift = TOP - min(ys, default=0.0)
    nodes = [DrawnNode(node.name, node.kme_url, saes[node.name], round(WIDTH / 2 + rx * math.cos(a), 1),
                       round(y + shift, 1)) for node, a, y in zip(network.nodes, angles, ys, strict=True)]
    at = {n.name: n for n in nodes}
    links = []
    for link in network.links:
        a, b = (at[end] for end in link.between)
        title = f"{link.name}: {link.state}" + (f" ({link.state_reason})" if link.state_reason else "") + \
            f"; key rate {bitrate(link.secret_key_rate_bps)}, QBER {link.qber:.3f}"
        links.append(DrawnLink(link.name, link.state, link_label(link), title, a.x, a.y, b.x, b.y))
    return Drawing(nodes, links, round(max((n.y for n in nodes), default=TOP) + LABELS, 1))


def link_charts(link: LinkOut, samples: Sequence[QkdLinkSample], minutes: int, now: dt.datetime) -> list[Chart]:
    """Key rate, QBER (with the protocol's threshold) and stored keys of one link."""
    start = chart_start(samples, minutes, now)
    span_s = max((now - start).total_seconds(), 1.0)
    scale, unit = rate_unit(max((s.rate_bps for s in samples), default=0.0))
    return [
        line_chart("Secret key rate", unit, samples, start, span_s, [("rate", lambda s: s.rate_bps / scale)], 1,
                   key=f"{link.name}-rate"),
        line_chart("QBER", "%", samples, start, span_s, [("QBER", lambda s: 100 * s.qber)], 1,
                   threshold=100 * threshold(link), key=f"{link.name}-qber"),
        line_chart("Stored keys", "keys", samples, start, span_s, [("stored", lambda s: s.stored_keys)], 10,
                   key=f"{link.name}-stored"),
    ]
