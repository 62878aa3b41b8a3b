"""The timeline charts of the HTML report: inline SVG with a layout that never overlaps
(pure; no I/O).

What a chart holds, top to bottom: the title; a band of **mark labels** (kick, outage,
recovery...) placed in lanes so that no two overlap, each joined to its instant by a
dashed line through the plot; the plot with its axes; the **legend**, wrapped into rows
that fit the width; and, when two series coincide (the same values at every sample, so
one line would hide the other), a **note** saying so -- the lower one is drawn wide and
pale, the upper one dashed on top of it.  Every series has its own dash pattern too.

Text widths are *estimated* from per-character advance widths (:func:`text_width`), on
the generous side of common sans-serif fonts (DejaVu Sans, Liberation Sans, Arial), so
that boxes laid out here still do not touch once a browser renders them with its own
font.  ``tests/scenarios/test_chart.py`` checks the boxes both ways: with these
estimates in Python, and as headless Chromium measures them (``getBBox()``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FONT_PX",
    "Box",
    "LabelPlacement",
    "coinciding",
    "estimated_box",
    "overlaps",
    "place_labels",
    "text_width",
    "timeline_svg",
]

#: Font size of every text in a chart (px).
FONT_PX = 11.0

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
#: One dash pattern per series (solid first): lines that cross or run together stay
#: distinguishable in print and for colour-blind readers.
_DASHES = ["", "7 4", "2 3", "10 3 2 3", "4 4", "1 5"]

# Advance widths in em, rounded up from DejaVu Sans (the widest of the usual sans-serif
# fonts); unlisted characters count as wide.
_NARROW = set("ijlI.,:;'|!()[]{} ")
_MEDIUM = set('frt-/\\"*')
_WIDE = set("mwMW@%&")


def text_width(text: str, font_px: float = FONT_PX) -> float:
    """A generous estimate of ``text``'s rendered width in px."""
    em = 0.0
    for ch in text:
        if ch in _NARROW:
            em += 0.36
        elif ch in _MEDIUM:
            em += 0.48
        elif ch in _WIDE:
            em += 1.0
        elif ch.isupper():
            em += 0.76
        elif ch.isascii():
            em += 0.64
        else:
            em += 1.0
    return em * font_px


@dataclass(frozen=True)
class Box:
    """An axis-aligned box (x, y of the top-left corner, width, height)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def inside(self, width: float, height: float) -> bool:
        return self.x >= 0 and self.y >= 0 and self.right <= width and self.bottom <= height


def overlaps(a: Box, b: Box, pad: float = 0.0) -> bool:
    """Whether two boxes intersect (``pad``: a margin around each)."""
    return not (
        a.right + pad <= b.x
        or b.right + pad <= a.x
        or a.bottom + pad <= b.y
        or b.bottom + pad <= a.y
    )


@dataclass(frozen=True)
class LabelPlacement:
    """Where one mark's label goes: the text's x, its anchor, its lane (0: the top)."""

    x: float
    anchor: str  # "start" (right of the line) or "end" (left of it)
    lane: int
    width: float


def place_labels(
    xs: Sequence[float], widths: Sequence[float], *, lo: float, hi: float, gap: float = 6.0
) -> list[LabelPlacement]:
    """Lanes for labels at ``xs`` (the marks' x) so that no two in a lane overlap.

    Each label sits right of its line, or left of it when it would pass ``hi``; it goes
    into the first lane where it keeps ``gap`` from its neighbours.  ``lo``/``hi``:
    the horizontal room (the chart's edges)."""
    lanes: list[list[tuple[float, float]]] = []
    out: list[LabelPlacement] = []
    for x, w in zip(xs, widths, strict=True):
        if x + 3 + w <= hi:
            anchor, a, b = "start", x + 3, x + 3 + w
        else:
            anchor, a, b = "end", max(lo, x - 3 - w), x - 3
        free = (k for k, taken in enumerate(lanes) if _clear(taken, a, b, gap))
        lane = next(free, len(lanes))
        if lane == len(lanes):
            lanes.append([])
        lanes[lane].append((a, b))
        out.append(LabelPlacement(a if anchor == "start" else b, anchor, lane, w))
    return out


def _clear(taken: Sequence[tuple[float, float]], a: float, b: float, gap: float) -> bool:
    return all(b + gap <= s or e + gap <= a for s, e in taken)


class Point(Protocol):
    @property
    def t(self) -> float: ...

    @property
    def values(self) -> Mapping[str, float]: ...


class Instant(Protocol):
    @property
    def t(self) -> float: ...

    @property
    def label(self) -> str: ...


def coinciding(points: Sequence[Point], series: Sequence[str]) -> dict[str, str]:
    """Series drawn exactly over an earlier one: ``{later: earlier}`` (the same value at
    every sample where either has one)."""
    out: dict[str, str] = {}
    for j, later in enumerate(series):
        for earlier in series[:j]:
            if earlier in out:
                continue
            pairs = [
                (p.values.get(earlier), p.values.get(later))
                for p in points
                if earlier in p.values or later in p.values
            ]
            if pairs and all(a is not None and a == b for a, b in pairs):
                out[later] = earlier
                break
    return out


def _nice_ceiling(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp  # pragma: no cover


def _fmt(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.3g}"


def timeline_svg(
    points: Sequence[Point],
    series: Sequence[str],
    *,
    marks: Sequence[Instant] = (),
    title: str = "",
    width: int = 760,
    plot_height: int = 140,
    time_unit: str = "s",
) -> str:
    """One line chart (inline SVG) of ``series`` over time, a dashed line at each mark."""
    esc = html.escape
    left, right = 60, 16
    pw = width - left - right
    line_h = FONT_PX + 3
    t_max = max([p.t for p in points] + [m.t for m in marks] + [1e-9])
    y_max = _nice_ceiling(
        max([float(p.values.get(s, 0.0)) for p in points for s in series] + [0.0])
    )

    def x(t: float) -> float:
        return float(left + pw * t / t_max)

    # -- mark labels: lanes above the plot
    ordered = sorted(marks, key=lambda m: m.t)
    widths = [text_width(m.label) for m in ordered]
    placed = place_labels([x(m.t) for m in ordered], widths, lo=2.0, hi=width - 2.0)
    lanes = 1 + max((p.lane for p in placed), default=-1)
    title_h = 20.0
    top = title_h + lanes * line_h + (4 if lanes else 0)
    ph = float(plot_height)

    def y(v: float) -> float:
        return float(top + ph * (1 - v / y_max))

    # -- legend: rows that fit the width
    over = coinciding(points, series)
    legend_y0 = top + ph + 18 + 6
    entries: list[tuple[str, float, float]] = []  # name, x, y (baseline)
    cx, row = float(left), 0
    for s in series:
        need = 26 + text_width(s)
        if cx + need > width - 4 and cx > left:
            cx, row = float(left), row + 1
        entries.append((s, cx, legend_y0 + row * (line_h + 2) + FONT_PX))
        cx += need + 14
    legend_h = (row + 1) * (line_h + 2) if series else 0.0
    notes = [
        f"{later} coincides with {earlier}: drawn dashed over the wide pale {earlier} line"
        for later, earlier in over.items()
    ]
    notes_y0 = legend_y0 + legend_h + 2
    height = math.ceil(notes_y0 + len(notes) * line_h + 4)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        f'font-family="sans-serif" font-size="{FONT_PX:g}">',
        f'<text class="title" x="{left}" y="14" font-weight="bold">{esc(title)}</text>',
        f'<rect x="{left}" y="{top:.1f}" width="{pw}" height="{ph:.0f}" fill="none" '
        'stroke="#999"/>',
    ]
    for i in range(5):
        v = y_max * i / 4
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
            f'<text class="tick" x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">'
            f"{_fmt(v)}</text>"
        )
    for i in range(6):
        t = t_max * i / 5
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(
            f'<text class="tick" x="{x(t):.1f}" y="{top + ph + 14:.1f}" '
            f'text-anchor="{anchor}">{t:.1f}{esc(time_unit)}</text>'
        )
    # Lines first, labels over them with a white halo: a lane's label may sit where the
    # line of a mark in a higher lane passes down to the plot.
    baselines = [title_h + p.lane * line_h + FONT_PX for p in placed]
    for m, ly in zip(ordered, baselines, strict=True):
        out.append(
            f'<line class="mark" x1="{x(m.t):.1f}" x2="{x(m.t):.1f}" y1="{ly - FONT_PX:.1f}" '
            f'y2="{top + ph:.1f}" stroke="#888" stroke-dasharray="4 3"/>'
        )
    for m, p, ly in zip(ordered, placed, baselines, strict=True):
        out.append(
            f'<text class="mark-label" x="{p.x:.1f}" y="{ly:.1f}" text-anchor="{p.anchor}" '
            f'fill="#555" stroke="#fff" stroke-width="3" paint-order="stroke">'
            f"{esc(m.label)}</text>"
        )
    styles: dict[str, tuple[str, float, str, float]] = {}  # colour, width, dash, opacity
    for i, s in enumerate(series):
        covered = s in over.values()
        styles[s] = (
            _COLOURS[i % len(_COLOURS)],
            4.0 if covered else 1.6,
            "" if covered else _DASHES[i % len(_DASHES)],
            0.45 if covered else 1.0,
        )
    for s in series:
        colour, sw, dash, opacity = styles[s]
        coords = " ".join(
            f"{x(p.t):.1f},{y(float(p.values.get(s, 0.0))):.1f}" for p in points if s in p.values
        )
        if coords:
            out.append(
                f'<polyline class="series" data-series="{esc(s)}" fill="none" '
                f'stroke="{colour}" stroke-width="{sw:g}" stroke-opacity="{opacity:g}"'
                + (f' stroke-dasharray="{dash}"' if dash else "")
                + f' points="{coords}"/>'
            )
    for s, ex, ey in entries:
        colour, sw, dash, opacity = styles[s]
        out.append(
            f'<line x1="{ex:.1f}" x2="{ex + 22:.1f}" y1="{ey - 4:.1f}" y2="{ey - 4:.1f}" '
            f'stroke="{colour}" stroke-width="{min(sw, 4):g}" stroke-opacity="{opacity:g}"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
            f'<text class="legend" x="{ex + 26:.1f}" y="{ey:.1f}">{esc(s)}</text>'
        )
    for k, note in enumerate(notes):
        out.append(
            f'<text class="note" x="{left}" y="{notes_y0 + k * line_h + FONT_PX:.1f}" '
            f'fill="#555">{esc(note)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def estimated_box(text: str, x: float, y: float, anchor: str = "start") -> Box:
    """The box :func:`timeline_svg` reserves for a text drawn at (x, y baseline)."""
    w = text_width(text)
    left = x if anchor == "start" else x - w if anchor == "end" else x - w / 2
    return Box(left, y - FONT_PX, w, FONT_PX * 1.25)
