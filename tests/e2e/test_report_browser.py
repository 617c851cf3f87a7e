"""The report page, opened in headless Chromium, draws a verdict table, charts and timelines.

The screenshot is decoded with a small PNG reader (zlib and the five PNG row filters) so
the test needs nothing beyond the standard library and a ``chromium`` binary; without
one it is skipped with a message that says what to install.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from harness.report.demo import write_demo

pytestmark = pytest.mark.e2e

WINDOW_WIDTH_PX = 1_400
WINDOW_HEIGHT_PX = 2_000
CHROMIUM_TIMEOUT_S = 120
FAIL_RED = (0xCF, 0x22, 0x2E)  # the background of a broken verdict cell
PASS_GREEN_BG = (0xDA, 0xFB, 0xE1)  # the background of a verdict cell that held
OK_GREEN = (0x2D, 0xA4, 0x4E)  # an acknowledged op on a timeline


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); "
                    "the report's browser test needs it to take a screenshot")
    return found


def screenshot(html: Path, png: Path, profile_dir: Path) -> None:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile_dir}", f"--screenshot={png}",
               f"--window-size={WINDOW_WIDTH_PX},{WINDOW_HEIGHT_PX}", html.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S,
                            check=False)
    assert png.exists(), f"chromium wrote no screenshot (exit {result.returncode}): " \
        f"{result.stderr[-2_000:]}"


def test_report_page_renders_verdicts_charts_and_timelines(tmp_path: Path) -> None:
    paths = write_demo(tmp_path / "report", ops_per_scenario=200)
    png = tmp_path / "page.png"
    screenshot(paths.index_html, png, tmp_path / "profile")

    assert png.stat().st_size > 50_000
    width, height, pixels = decode_png(png.read_bytes())
    assert (width, height) == (WINDOW_WIDTH_PX, WINDOW_HEIGHT_PX)
    colours = Counter(pixels)
    _, background_count = colours.most_common(1)[0]
    assert background_count < 0.9 * width * height, "the page is (nearly) blank"
    assert len(colours) > 500, "too few colours for text, charts and a table"
    assert near(colours, FAIL_RED) > 2_000, "no red verdict cell for the broken checkers"
    assert near(colours, PASS_GREEN_BG) > 10_000, "no green verdict cells for those that held"
    assert near(colours, OK_GREEN) > 500, "no timeline bars"


def near(colours: Counter[tuple[int, int, int]], target: tuple[int, int, int],
         tolerance: int = 6) -> int:
    """Pixels within ``tolerance`` of ``target`` on every channel."""
    return sum(count for colour, count in colours.items()
               if all(abs(a - b) <= tolerance for a, b in zip(colour, target, strict=True)))


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed = 8, []
    width = height = channels = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8, depth
            assert interlace == 0, interlace
            channels = {2: 3, 6: 4}[colour_type]
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(compressed))
    stride = width * channels
    pixels: list[tuple[int, int, int]] = []
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous,
                         channels)
        pixels.extend(zip(line[0::channels], line[1::channels], line[2::channels], strict=True))
        previous = line
    return width, height, pixels


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    if kind == 1:  # Sub
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
    elif kind == 3:  # Average
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    else:
        assert kind == 0, f"unknown PNG filter {kind}"
    return line
