"""Debian's headless Chromium for tests: a page's DOM once its scripts have run, and a screenshot decoded to
pixels (a small PNG reader, so that no imaging library is needed)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from tests.test_examples import require

CHROMIUM = "/usr/bin/chromium"
#: Generous: Chromium starts slowly on a loaded 2-core machine.
BROWSER_SECONDS = 120


def chromium() -> str:
    """Chromium's path; skips (fails in CI, LEXEY_CI_REQUIRE=chromium) without it."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        require("chromium", "headless Chromium is not installed (apt-get install chromium)")
    return found


def _headless(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; the page is our own file.
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args]
    return subprocess.run(
        [*command, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=BROWSER_SECONDS,
        check=True,
    )


def rendered_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, as HTML."""
    return _headless(page, profile, "--dump-dom").stdout


def screenshot(page: Path, profile: Path, out: Path, width: int, height: int) -> Png:
    """A screenshot of the page's first `width`×`height` CSS pixels, decoded."""
    _headless(page, profile, f"--screenshot={out}", f"--window-size={width},{height}", "--hide-scrollbars")
    return read_png(out.read_bytes())


@dataclass
class Png:
    width: int
    height: int
    pixels: list[tuple[int, int, int]]  # row by row


def read_png(data: bytes) -> Png:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as RGB pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) in ((8, 2, 0), (8, 6, 0)), (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw, rows, previous = zlib.decompress(idat), [], bytearray(stride)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up, corner = previous[x], previous[x - channels] if x >= channels else 0
            row[x] = (row[x] + _predict(kind, left, up, corner)) & 0xFF
        rows.append(row)
        previous = row
    pixels = [tuple(row[x : x + 3]) for row in rows for x in range(0, stride, channels)]
    return Png(width, height, pixels)  # type: ignore[arg-type]  # 3-tuples by construction


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    estimate = left + up - corner
    near = min((abs(estimate - left), 0, left), (abs(estimate - up), 1, up), (abs(estimate - corner), 2, corner))
    return near[2]
