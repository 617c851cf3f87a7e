"""Inline SVG charts for the HTML report, as pure functions from data to markup.

``line_chart`` draws lines, steps and scatter points against nice axes with a legend;
``timeline`` draws one horizontal bar per op, one lane per process, from invoke to
completion, with the ops of an anomaly highlighted. Both cap what they draw
(``points_max``, ``bars_max``, ``lanes_max``) so a million-op history renders in a
moment, and both escape every piece of text they are given.

Nothing here reads files, the clock or a history: callers pass plain numbers and strings.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

__all__ = [
    "PALETTE",
    "STATE_COLOURS",
    "Band",
    "Bar",
    "BarState",
    "Series",
    "downsample_line",
    "downsample_points",
    "line_chart",
    "nice_ticks",
    "timeline",
]

# Okabe-Ito, readable by the colour-blind; the order is the order series take them.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
           "#7A5195", "#8C6D31", "#000000", "#999999", "#F0E442")

BarState = Literal["ok", "fail", "info", "open"]
STATE_COLOURS: dict[str, str] = {"ok": "#2da44e", "fail": "#cf222e", "info": "#d4a72c",
                                 "open": "#8c959f"}
STATE_NAMES = {"ok": "ok", "fail": "failed", "info": "indeterminate", "open": "no completion"}

_FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\""
_CHAR_PX = 6.4  # average glyph width at 11px, to lay legends out without a font engine
_TICKS_MAX = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One named set of (x, y) points and how to draw it."""

    name: str
    points: Sequence[tuple[float, float]]
    colour: str
    mode: Literal["line", "step", "points"] = "line"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One op on a timeline: its lane (process), when it ran, and how it ended."""

    lane: str  # "p7"; lanes are drawn in the order they first appear
    start_s: float
    end_s: float | None  # None: never completed; drawn to the right edge, dashed
    state: BarState
    label: str  # short, drawn on highlighted bars: "#812 tip"
    tooltip: str  # shown on hover
    highlighted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Band:
    """A span of time shaded behind a chart: a fault, from injection to recovery."""

    start_s: float
    end_s: float | None  # None: it never ended; shaded to the right edge
    label: str  # drawn at the band's top: "f0 kill service"
    tooltip: str


_BAND_FILL = "#f3d9a4"
_BAND_STROKE = "#bf8700"


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               width: int = 660, height: int = 270, points_max: int = 2_000,
               x_range: tuple[float, float] | None = None, y_log: bool = False,
               bands: Sequence[Band] = ()) -> str:
    """An SVG chart of ``series`` with axes, grid, title and legend.

    Args:
        series: drawn in order; empty series still get a legend entry.
        points_max: points drawn over all series together; the rest are downsampled away
            (lines keep each bucket's minimum and maximum, scatters keep the largest y).
        x_range: the x domain; by default the extent of the data.
        y_log: a logarithmic y axis (values at or below zero sit on its floor), for
            latencies that span milliseconds to seconds.
        bands: spans of time (faults) shaded behind the data, with their labels.

    Returns:
        One ``<svg>`` element as a string.
    """
    per_series_max = max(points_max // max(len(series), 1), 8)
    drawn = [_thinned(s, per_series_max) for s in series]
    legend_svg, legend_px = _legend([(s.name, s.colour, s.mode) for s in series], width)
    left, right, top, bottom = 62, 18, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    total_h = height + legend_px
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points]
    parts = [_svg_open(width, total_h, title),
             f'<text x="{left}" y="18" font-size="13" font-weight="600" {_FONT} '
             f'fill="#1f2328">{escape(title)}</text>']
    if not xs:
        parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
                     f'fill="#f6f8fa" stroke="#d0d7de"/><text x="{left + plot_w / 2}" '
                     f'y="{top + plot_h / 2}" text-anchor="middle" font-size="12" {_FONT} '
                     f'fill="#57606a">no data</text>')
    else:
        x_lo, x_hi = x_range if x_range is not None else (min(xs), max(xs))
        x_lo, x_hi, x_ticks = _domain_ticks(x_lo, x_hi, count=6)
        if y_log:
            y_ticks = _log_ticks(min((y for y in ys if y > 0), default=1.0), max(ys))
        else:
            y_ticks = nice_ticks(min(0.0, min(ys)), max(ys))
        frame = _Frame(left, top, plot_w, plot_h, x_lo, x_hi, y_ticks[0], y_ticks[-1],
                       y_log=y_log)
        parts.append(_axes(frame, x_ticks, y_ticks, x_label, y_label))
        parts.append(_bands_svg(frame, bands))
        parts.extend(_series_svg(frame, s) for s in drawn)
    parts.append(f'<g transform="translate(0,{height})">{legend_svg}</g></svg>')
    return "".join(parts)


def timeline(bars: Sequence[Bar], *, title: str, width: int = 1_100, lanes_max: int = 40,
             bars_max: int = 2_000, x_range: tuple[float, float] | None = None,
             bands: Sequence[Band] = ()) -> str:
    """An SVG timeline: one lane per process, one bar per op from invoke to completion.

    Highlighted bars are drawn opaque, outlined and labelled; the others are faded. When
    there are more than ``lanes_max`` lanes or ``bars_max`` bars, lanes holding highlighted
    bars are kept first, then the busiest; bars likewise.

    Returns:
        One ``<svg>`` element as a string.
    """
    kept = _kept_bars(bars, lanes_max=lanes_max, bars_max=bars_max)
    lanes = list(dict.fromkeys(b.lane for b in kept))
    lane_px, left, right, top, axis_px = 20, 74, 16, 28, 34
    height = top + lane_px * max(len(lanes), 1) + axis_px
    legend_svg, legend_px = _legend(
        [(STATE_NAMES[s], STATE_COLOURS[s], "bar") for s in ("ok", "fail", "info", "open")]
        + [("ops of this anomaly", "#1f2328", "outline")], width)
    parts = [_svg_open(width, height + legend_px, title),
             f'<text x="{left}" y="17" font-size="12" font-weight="600" {_FONT} '
             f'fill="#1f2328">{escape(title)}</text>']
    ends = [b.end_s if b.end_s is not None else b.start_s for b in kept]
    lo = x_range[0] if x_range else min((b.start_s for b in kept), default=0.0)
    hi = x_range[1] if x_range else max(ends, default=1.0)
    lo, hi, ticks = _domain_ticks(lo, hi, count=8)
    frame = _Frame(left, top, width - left - right, lane_px * max(len(lanes), 1), lo, hi,
                   0.0, 1.0)
    parts.append(_time_axis(frame, ticks))
    row = {lane: i for i, lane in enumerate(lanes)}
    bands_svg = _bands_svg(frame, bands)
    for lane, i in row.items():
        y = top + i * lane_px
        if i % 2 == 0:
            parts.append(f'<rect x="{left}" y="{y}" width="{frame.w}" height="{lane_px}" '
                         f'fill="#f6f8fa"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="11" '
                     f'{_FONT} fill="#57606a">{escape(lane)}</text>')
    parts.append(bands_svg)  # over the lane stripes, under the bars
    # Faded bars first, so the highlighted ones are drawn on top of them.
    for bar in sorted(kept, key=lambda b: b.highlighted):
        parts.append(_bar_svg(frame, bar, top + row[bar.lane] * lane_px, lane_px))
    parts.append(f'<g transform="translate(0,{height})">{legend_svg}</g></svg>')
    return "".join(parts)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    assert count >= 1, count
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):  # too narrow to divide in floats
        hi = lo + max(abs(lo), 1.0)
    raw_step = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next((m * magnitude for m in (1, 2, 2.5, 5) if m * magnitude >= raw_step),
                10 * magnitude)
    # Forgive float noise (0.30000000000000004 is 0.3), but never leave lo or hi uncovered.
    first_count = math.floor(lo / step + 1e-9)
    if first_count * step > lo:
        first_count -= 1
    last_count = math.ceil(hi / step - 1e-9)
    if last_count * step < hi:
        last_count += 1
    ticks_count = min(last_count - first_count + 1, _TICKS_MAX + 1)
    return [(first_count + i) * step for i in range(ticks_count)]


def downsample_line(points: Sequence[tuple[float, float]], points_max: int,
                    ) -> list[tuple[float, float]]:
    """At most ``points_max`` points (sorted by x) keeping each bucket's lowest and highest."""
    assert points_max >= 2, points_max
    ordered = sorted(points)
    if len(ordered) <= points_max:
        return ordered
    buckets_count = points_max // 2
    size = len(ordered) / buckets_count
    kept: list[tuple[float, float]] = []
    for b in range(buckets_count):
        bucket = ordered[int(b * size):max(int((b + 1) * size), int(b * size) + 1)]
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        kept.extend(sorted({low, high}))
    return kept


def downsample_points(points: Sequence[tuple[float, float]], points_max: int,
                      ) -> list[tuple[float, float]]:
    """At most ``points_max`` points: the largest tenth by y, then an even stride of the rest.

    The outliers are what a reader looks for in a latency scatter, so they always stay.
    """
    assert points_max >= 1, points_max
    if len(points) <= points_max:
        return list(points)
    top_count = points_max // 10
    chosen = set(heapq.nlargest(top_count, range(len(points)), key=lambda i: points[i][1]))
    stride = len(points) / (points_max - top_count)
    chosen.update(int(i * stride) for i in range(points_max - top_count))
    return [points[i] for i in sorted(chosen)][:points_max]


def _domain_ticks(lo: float, hi: float, *, count: int) -> tuple[float, float, list[float]]:
    """The exact domain [lo, hi] (widened if empty) and the round ticks that fall inside it."""
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        hi = lo + max(abs(lo), 1.0)
    slack = (hi - lo) * 1e-9
    ticks = [t for t in nice_ticks(lo, hi, count) if lo - slack <= t <= hi + slack]
    return lo, hi, ticks or [lo, hi]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks at powers of ten covering [lo, hi], with 2 and 5 between when decades are few."""
    first = math.floor(math.log10(lo))
    last = max(math.ceil(math.log10(hi)), first + 1)
    steps = (1, 2, 5) if last - first <= 3 else (1,)
    ticks = [m * 10.0**d for d in range(first, last) for m in steps]
    ticks = [t for t in ticks if t >= 10.0**first] + [10.0**last]
    return ticks


# ---------------------------------------------------------------------------------------
# Drawing helpers.


@dataclass(frozen=True, slots=True)
class _Frame:
    """The plot area in pixels and the data domain it shows."""

    x: float
    y: float
    w: float
    h: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    y_log: bool = False

    def px(self, x: float) -> float:
        span = self.x_hi - self.x_lo or 1.0
        return self.x + (x - self.x_lo) / span * self.w

    def py(self, y: float) -> float:
        if self.y_log:
            lo, hi = math.log10(self.y_lo), math.log10(self.y_hi)
            at = math.log10(max(y, self.y_lo))
            return self.y + self.h - (at - lo) / ((hi - lo) or 1.0) * self.h
        span = self.y_hi - self.y_lo or 1.0
        return self.y + self.h - (y - self.y_lo) / span * self.h


def _bands_svg(frame: _Frame, bands: Sequence[Band]) -> str:
    """Each band shaded across the plot's height, clipped to its domain, labelled."""
    parts = []
    for band in bands:
        end_s = frame.x_hi if band.end_s is None else band.end_s
        start_s = max(band.start_s, frame.x_lo)
        end_s = min(max(end_s, start_s), frame.x_hi)
        if end_s < frame.x_lo or start_s > frame.x_hi:
            continue
        x0, x1 = frame.px(start_s), frame.px(end_s)
        parts.append(f'<g class="band"><title>{escape(band.tooltip)}</title>'
                     f'<rect x="{x0:.1f}" y="{frame.y:.1f}" width="{max(x1 - x0, 1.5):.1f}" '
                     f'height="{frame.h:.1f}" fill="{_BAND_FILL}" fill-opacity="0.55" '
                     f'stroke="{_BAND_STROKE}" stroke-width="0.6"/>'
                     f'<text x="{x0 + 2:.1f}" y="{frame.y + 10:.1f}" font-size="9" {_FONT} '
                     f'fill="{_BAND_STROKE}">{escape(band.label)}</text></g>')
    return "".join(parts)


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">')


def _thinned(series: Series, points_max: int) -> Series:
    if series.mode == "points":
        points = downsample_points(series.points, points_max)
    else:
        points = downsample_line(series.points, max(points_max, 2))
    return Series(name=series.name, points=points, colour=series.colour, mode=series.mode)


def _axes(frame: _Frame, x_ticks: list[float], y_ticks: list[float], x_label: str,
          y_label: str) -> str:
    linear_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    parts = [f'<rect x="{frame.x}" y="{frame.y}" width="{frame.w}" height="{frame.h}" '
             f'fill="#ffffff" stroke="#d0d7de"/>']
    for tick in y_ticks:
        y = round(frame.py(tick), 1)
        parts.append(f'<line x1="{frame.x}" x2="{frame.x + frame.w}" y1="{y}" y2="{y}" '
                     f'stroke="#eaeef2"/><text x="{frame.x - 6}" y="{y + 4}" '
                     f'text-anchor="end" font-size="10" {_FONT} fill="#57606a">'
                     f'{escape(_number(tick, tick if frame.y_log else linear_step))}</text>')
    parts.append(_time_axis(frame, x_ticks))
    mid_y = frame.y + frame.h / 2
    parts.append(f'<text x="{frame.x + frame.w / 2}" y="{frame.y + frame.h + 34}" '
                 f'text-anchor="middle" font-size="11" {_FONT} fill="#57606a">'
                 f'{escape(x_label)}</text>'
                 f'<text x="14" y="{mid_y}" text-anchor="middle" font-size="11" {_FONT} '
                 f'fill="#57606a" transform="rotate(-90 14 {mid_y})">{escape(y_label)}</text>')
    return "".join(parts)


def _time_axis(frame: _Frame, ticks: list[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    bottom = frame.y + frame.h
    parts = []
    for tick in ticks:
        x = round(frame.px(tick), 1)
        parts.append(f'<line x1="{x}" x2="{x}" y1="{frame.y}" y2="{bottom}" stroke="#eaeef2" '
                     f'stroke-dasharray="2 3"/><text x="{x}" y="{bottom + 14}" '
                     f'text-anchor="middle" font-size="10" {_FONT} fill="#57606a">'
                     f'{escape(_number(tick, step))}</text>')
    return "".join(parts)


def _series_svg(frame: _Frame, series: Series) -> str:
    colour = escape(series.colour)
    name = escape(series.name)
    if not series.points:
        return ""
    if series.mode == "points":
        dots = "".join(f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2.4"/>'
                       for x, y in series.points)
        return (f'<g fill="{colour}" fill-opacity="0.7"><title>{name}</title>{dots}</g>')
    coords: list[str] = []
    previous_y: float | None = None
    for x, y in series.points:
        if series.mode == "step" and previous_y is not None:
            coords.append(f"{frame.px(x):.1f},{frame.py(previous_y):.1f}")
        coords.append(f"{frame.px(x):.1f},{frame.py(y):.1f}")
        previous_y = y
    return (f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
            f'stroke-linejoin="round" points="{" ".join(coords)}"><title>{name}</title>'
            f'</polyline>')


def _legend(entries: Sequence[tuple[str, str, str]], width: int) -> tuple[str, int]:
    """Legend items flowing left to right in rows; returns the markup and its height."""
    x, y, row_px, left = 62.0, 4.0, 18, 62.0
    parts: list[str] = []
    for name, colour, mode in entries:
        item_px = 22 + len(name) * _CHAR_PX + 16
        if x + item_px > width - 10 and x > left:
            x, y = left, y + row_px
        parts.append(_swatch(x, y, colour, mode))
        parts.append(f'<text x="{x + 20:.1f}" y="{y + 10}" font-size="11" {_FONT} '
                     f'fill="#1f2328">{escape(name)}</text>')
        x += item_px
    return "".join(parts), int(y + row_px + 4) if entries else 0


def _swatch(x: float, y: float, colour: str, mode: str) -> str:
    colour = escape(colour)
    if mode == "points":
        return f'<circle cx="{x + 8:.1f}" cy="{y + 6}" r="3.5" fill="{colour}"/>'
    if mode == "bar":
        return f'<rect x="{x:.1f}" y="{y + 1}" width="16" height="10" rx="2" fill="{colour}"/>'
    if mode == "outline":
        return (f'<rect x="{x:.1f}" y="{y + 1}" width="16" height="10" rx="2" fill="#ffffff" '
                f'stroke="{colour}" stroke-width="2"/>')
    return (f'<line x1="{x:.1f}" x2="{x + 16:.1f}" y1="{y + 6}" y2="{y + 6}" '
            f'stroke="{colour}" stroke-width="2.5"/>')


def _kept_bars(bars: Sequence[Bar], *, lanes_max: int, bars_max: int) -> list[Bar]:
    """Bars to draw: highlighted lanes and bars first, then the busiest lanes, in input order."""
    per_lane: dict[str, int] = {}
    for bar in bars:
        per_lane[bar.lane] = per_lane.get(bar.lane, 0) + 1
    hot = {b.lane for b in bars if b.highlighted}
    ranked = sorted(per_lane, key=lambda lane: (lane not in hot, -per_lane[lane]))
    lanes = set(ranked[:lanes_max])
    in_lanes = [b for b in bars if b.lane in lanes]
    if len(in_lanes) <= bars_max:
        return in_lanes
    chosen = {i for i, b in enumerate(in_lanes) if b.highlighted}
    for i in range(len(in_lanes)):
        if len(chosen) >= bars_max:
            break
        chosen.add(i)
    return [in_lanes[i] for i in sorted(chosen)]


def _bar_svg(frame: _Frame, bar: Bar, lane_y: float, lane_px: int) -> str:
    x0 = max(frame.px(bar.start_s), frame.x)
    x1 = frame.x + frame.w if bar.end_s is None else min(frame.px(bar.end_s), frame.x + frame.w)
    w = max(x1 - x0, 2.0)
    colour = STATE_COLOURS[bar.state]
    style = ' stroke-dasharray="3 2" stroke="#57606a"' if bar.end_s is None else ""
    if bar.highlighted:
        style = (' stroke="#1f2328" stroke-width="1.6"'
                 + (' stroke-dasharray="3 2"' if bar.end_s is None else ""))
    opacity = "1" if bar.highlighted else "0.45"
    rect = (f'<rect x="{x0:.1f}" y="{lane_y + 4}" width="{w:.1f}" height="{lane_px - 8}" '
            f'rx="2" fill="{colour}" fill-opacity="{opacity}"{style}/>')
    label = ""
    if bar.highlighted:
        inside = w > len(bar.label) * _CHAR_PX + 8
        tx = x0 + 4 if inside else x0 + w + 4
        anchor = "start"
        if not inside and tx + len(bar.label) * _CHAR_PX > frame.x + frame.w:
            tx, anchor = x0 - 4, "end"
        fill = "#ffffff" if inside and bar.state != "info" else "#1f2328"
        label = (f'<text x="{tx:.1f}" y="{lane_y + 14}" text-anchor="{anchor}" font-size="10.5" '
                 f'font-weight="600" {_FONT} fill="{fill}">{escape(bar.label)}</text>')
    return f'<g><title>{escape(bar.tooltip)}</title>{rect}{label}</g>'


def _number(value: float, step: float) -> str:
    """A tick label: as few decimals as the step needs, thousands as k and millions as M."""
    if abs(value) < step * 1e-6:
        value = 0.0
    magnitude = abs(value)
    if magnitude >= 1_000_000 and step >= 100_000:
        return f"{value / 1_000_000:g}M"
    if magnitude >= 10_000 and step >= 1_000:
        return f"{value / 1_000:g}k"
    decimals = next((d for d in range(7) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 6)
    return f"{value:.{decimals}f}"
