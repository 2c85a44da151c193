"""Look before you train: a grid image of synthetic lines (optionally beside real ones).

    >>> from vhrdata.synth.preview import preview_lines, stack_grid  # doctest: +SKIP
    >>> lines, texts = preview_lines(12, seed=1, capture="mix")  # doctest: +SKIP
    >>> cv2.imwrite("docs/img/synth_grid.png", stack_grid(lines))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from vhrdata.synth.addresses import generate_texts
from vhrdata.synth.camera import SYNTH_CAMERA, CameraRanges
from vhrdata.synth.fontsource import resolve_fonts
from vhrdata.synth.generate import line_captures
from vhrdata.synth.render import DEFAULT_HEIGHT, make_writers, render_line
from vhrdata.synth.seeding import RENDER_STREAM, line_rng


def preview_lines(
    n: int = 12,
    seed: int = 1,
    capture: str = "mix",
    fonts: str = "train",
    camera: CameraRanges = SYNTH_CAMERA,
    height: int = DEFAULT_HEIGHT,
) -> tuple[list[np.ndarray], list[str]]:
    """`n` synthetic lines, one writer each, rendered as `synthesize` would; returns (images, texts)."""
    choice = resolve_fonts(fonts)
    writers = make_writers(n, seed, fonts=list(choice.fonts), height=height)
    texts = generate_texts(n, seed)
    captures = line_captures(n, seed, capture)
    images = [render_line(t, w, line_rng(seed, RENDER_STREAM, i), capture=c, camera=camera)
              for i, (t, w, c) in enumerate(zip(texts, writers, captures))]
    return images, texts


def stack_grid(images: Sequence[np.ndarray], width: int = 1400, height: int | None = None, gap: int = 6,
               scale_to_width: bool = False) -> np.ndarray:
    """Stack grayscale lines into one image `width` wide (white gaps; long lines cropped or scaled)."""
    rows = []
    for img in images:
        if height is not None and img.shape[0] != height:
            img = cv2.resize(img, (max(1, round(img.shape[1] * height / img.shape[0])), height),
                             interpolation=cv2.INTER_AREA)
        if scale_to_width and img.shape[1] > width:
            img = cv2.resize(img, (width, max(1, round(img.shape[0] * width / img.shape[1]))),
                             interpolation=cv2.INTER_AREA)
        img = img[:, :width]
        row = np.full((img.shape[0], width), 255, np.uint8)
        row[:, :img.shape[1]] = img
        rows += [row, np.full((gap, width), 255, np.uint8)]
    return np.vstack(rows[:-1]) if rows else np.full((1, width), 255, np.uint8)
