"""svg.py: charts and timelines are pure, escaped, capped, and put ticks where they belong."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from harness.report.svg import (
    Bar,
    Series,
    downsample_line,
    downsample_points,
    line_chart,
    nice_ticks,
    timeline,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_line_chart_is_well_formed_svg_with_title_axes_and_legend() -> None:
    svg = line_chart([Series(name="tip", points=[(0, 1), (1, 3), (2, 2)], colour="#0072B2"),
                      Series(name="read_balance", points=[(0.5, 7)], colour="#E69F00",
                             mode="points")],
                     title="Throughput", x_label="seconds", y_label="ops/s")
    root = parse(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Throughput" in texts
    assert {"tip", "read_balance", "seconds", "ops/s"} <= set(texts)
    assert root.find(f".//{SVG}polyline") is not None
    assert len(root.findall(f".//{SVG}circle")) >= 1


def test_line_chart_escapes_names() -> None:
    svg = line_chart([Series(name="<script>x</script>", points=[(0, 1)], colour="#000")],
                     title='a "b" & <c>', x_label="x", y_label="y")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    parse(svg)


def test_line_chart_without_points_says_no_data() -> None:
    root = parse(line_chart([], title="Latency", x_label="s", y_label="ms"))
    assert "no data" in [t.text for t in root.iter(f"{SVG}text")]


def test_line_chart_draws_at_most_points_max() -> None:
    many = [(float(i), float(i % 97)) for i in range(100_000)]
    svg = line_chart([Series(name="a", points=many, colour="#000", mode="points")],
                     title="t", x_label="x", y_label="y", points_max=500)
    assert svg.count("<circle") <= 500 + 1  # plus the legend's swatch


def test_log_axis_ticks_are_powers_of_ten() -> None:
    svg = line_chart([Series(name="a", points=[(0, 3), (1, 2_500)], colour="#000",
                             mode="points")], title="t", x_label="x", y_label="ms", y_log=True)
    labels = [t.text for t in parse(svg).iter(f"{SVG}text")]
    assert {"1", "10", "100", "1000"} <= set(labels)


def test_timeline_highlights_labels_and_escapes() -> None:
    bars = [Bar(lane="p1", start_s=0.0, end_s=0.5, state="ok", label="#3 tip",
                tooltip="tip <a&b>", highlighted=True),
            Bar(lane="p2", start_s=0.1, end_s=None, state="info", label="#4 tip",
                tooltip="never completed"),
            Bar(lane="p2", start_s=0.6, end_s=0.7, state="fail", label="#9 tip", tooltip="x")]
    svg = timeline(bars, title="Timeline")
    root = parse(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "#3 tip" in texts
    assert "#4 tip" not in texts  # only highlighted bars are labelled
    assert {"p1", "p2"} <= set(texts)
    assert "tip &lt;a&amp;b&gt;" in svg
    assert 'stroke-dasharray="3 2"' in svg  # the op that never completed


def test_timeline_caps_bars_and_lanes_keeping_highlighted_ones() -> None:
    bars = [Bar(lane=f"p{i % 100}", start_s=i / 1000, end_s=i / 1000 + 0.01, state="ok",
                label=f"#{i}", tooltip="", highlighted=i == 9_999) for i in range(10_000)]
    svg = timeline(bars, title="t", bars_max=300, lanes_max=10)
    assert svg.count("<rect") <= 300 + 10 + 5 + 5  # bars, lane stripes, legend swatches
    labels = [t.text for t in parse(svg).iter(f"{SVG}text")]
    assert "#9999" in labels
    assert "p99" in labels
    assert len([t for t in labels if t and re.fullmatch(r"p\d+", t)]) == 10


@given(st.floats(-1e9, 1e9), st.floats(-1e9, 1e9), st.integers(1, 10))
def test_nice_ticks_cover_the_range_with_few_even_steps(lo: float, hi: float,
                                                        count: int) -> None:
    ticks = nice_ticks(lo, hi, count)
    scale = max(1.0, abs(lo), abs(hi))
    assert 2 <= len(ticks) <= 13
    assert ticks[0] <= min(lo, hi) + 1e-9 * scale
    assert ticks[-1] >= max(lo, hi) - 1e-9 * scale
    step = ticks[1] - ticks[0]
    assert step > 0
    for a, b in itertools.pairwise(ticks):
        assert math.isclose(b - a, step, rel_tol=1e-6, abs_tol=1e-9 * scale)


def test_downsample_line_keeps_extremes_and_bound() -> None:
    points = [(float(i), 0.0) for i in range(10_000)]
    points[5_000] = (5_000.0, 99.0)
    points[7_000] = (7_000.0, -50.0)
    kept = downsample_line(points, 200)
    assert len(kept) <= 200
    assert (5_000.0, 99.0) in kept
    assert (7_000.0, -50.0) in kept


def test_downsample_points_keeps_the_slowest() -> None:
    points = [(float(i), float(i % 10)) for i in range(50_000)]
    points[123] = (123.0, 10_000.0)
    kept = downsample_points(points, 1_000)
    assert len(kept) <= 1_000
    assert (123.0, 10_000.0) in kept
