"""Toy records for tests and benchmarks: scribbled line images with labels that fit them.

Not handwriting and not for training: the images only have to decode, preprocess and batch like
real lines (grey paper, dark strokes, varying widths), quickly and reproducibly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from vhrdata.records import write_records

TOY_ALPHABET = "aăâbcdđeêghiklmnoôơpqrstuưvxyàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ ,./-0123456789"


def draw_toy_line(rng: np.random.Generator, height: int, width: int, noise: float = 6.0) -> np.ndarray:
    """A grey page with dark random strokes across most of its width."""
    paper = rng.integers(200, 240)
    img = np.full((height, width), paper, dtype=np.uint8)
    x = int(rng.integers(0, max(1, width // 20) + 1))
    thickness = max(1, height // 20)
    while x < width * 0.95:
        n = int(rng.integers(3, 7))
        xs = x + np.cumsum(rng.integers(1, max(2, height // 4), n))
        ys = rng.integers(height // 5, height - height // 5, n)
        pts = np.stack([xs, ys], axis=1).astype(np.int32)
        cv2.polylines(img, [pts], False, int(rng.integers(10, 90)), thickness, cv2.LINE_AA)
        x = int(xs[-1]) + int(rng.integers(1, max(2, height // 3)))
    if noise > 0:
        img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return img


def write_toy_records(
    directory: str | Path,
    n: int = 40,
    *,
    heights: tuple[int, int] = (24, 40),
    widths: tuple[int, int] = (60, 400),
    splits: Sequence[tuple[str, float]] = (("train", 0.8), ("val", 0.2)),
    writers: int = 4,
    noise: float = 6.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Write `n` toy line images as PNGs plus records.parquet (with a split column) into `directory`.

    Labels have about two characters per image-height of width, so they are CTC-feasible at any
    output height of 16 px or more with downsample 4.

    Returns:
        The records frame that was written.
    """
    directory = Path(directory)
    img_dir = directory / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [s for s, _ in splits]
    probs = np.array([p for _, p in splits], dtype=np.float64)
    split_of = rng.choice(len(names), size=n, p=probs / probs.sum())
    rows = []
    for i in range(n):
        h = int(rng.integers(heights[0], heights[1] + 1))
        w = int(rng.integers(widths[0], widths[1] + 1))
        img = draw_toy_line(rng, h, w, noise)
        path = img_dir / f"line{i:05d}.png"
        cv2.imwrite(str(path), img)
        n_chars = int(min(60, max(1, 2 * w // h)))
        text = "".join(rng.choice(list(TOY_ALPHABET), n_chars)).strip() or "a"
        rows.append({
            "id": f"toy/{i:05d}", "source": "manifest", "writer": f"w{i % writers}" if writers else None,
            "path": str(path.resolve()), "text": text, "raw_text": text, "width": w, "height": h,
            "sha1": hashlib.sha1(path.read_bytes()).hexdigest(), "origin": f"toy:{i}", "split": names[split_of[i]],
        })
    df = pd.DataFrame(rows)
    write_records(df, directory, {"source": "toy", "seed": seed})
    return df
