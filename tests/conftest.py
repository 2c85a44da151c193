"""Shared test helpers: tiny images written with numpy + OpenCV, and the optional real-data folder."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "cinnamon-0916"

requires_real_data = pytest.mark.skipif(
    not (REAL_DATA / "labels.json").is_file(),
    reason=f"real Cinnamon lines not found at {REAL_DATA} (only present inside the vhr workplace)",
)


def write_line_image(path: Path, width: int = 160, height: int = 32, seed: int = 0, ext: str | None = None) -> Path:
    """A small grey 'text line' image with random dark strokes, unique per seed."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 235, np.uint8)
    for _ in range(8):
        x = int(rng.integers(0, max(width - 10, 1)))
        y0, y1 = (int(v) for v in rng.integers(0, height, 2))
        cv2.line(img, (x, y0), (x + 8, y1), 20, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(ext or path.suffix or ".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height pixels, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# The vhrmodel tests' fixtures (a synthetic line store, a tiny model trained on it) live in their own module.
from vhrmodel_fixtures import line_store, trained_run  # noqa: E402,F401
