"""CTC frame arithmetic: the one home of "frames from a width" and of the feasibility check.

A CTC model with a total width stride of `downsample` emits `width // downsample` frames for a
line `width` pixels wide (the model crops the width to a multiple of `downsample` first). A
label can only be emitted when there are at least as many frames as characters, plus one blank
between each pair of equal neighbours. The store build (quarantine), the augmenter (never narrow
a line below it), the stats report (slack) and the model (`CRNN.num_frames`) all use these.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def frames_for_width(width, downsample: int):
    """Output frames for an input `width` (int or int array) at `downsample`."""
    if int(downsample) < 1:
        raise ValueError(f"downsample must be positive. Received: downsample={downsample}")
    if isinstance(width, (int, np.integer)):
        return int(width) // int(downsample)
    return (np.asarray(width, np.int64) // int(downsample)).astype(np.int32)


def ctc_frames_needed(label: str | Sequence[int] | np.ndarray) -> int:
    """Frames a label needs: one per character plus a blank between equal neighbours.

    `label` is a text, or 1-based ids where 0 is padding (ignored).
    """
    if isinstance(label, str):
        return len(label) + sum(1 for a, b in zip(label, label[1:]) if a == b)
    ids = np.asarray(label)
    ids = ids[ids > 0]
    repeats = int(np.count_nonzero(ids[1:] == ids[:-1])) if ids.size > 1 else 0
    return int(ids.size) + repeats


def min_ctc_width(label: str | Sequence[int] | np.ndarray, downsample: int) -> int:
    """Smallest image width whose frames can emit `label` under CTC."""
    return ctc_frames_needed(label) * int(downsample)


def ctc_feasible(width: int, label: str | Sequence[int] | np.ndarray, downsample: int) -> bool:
    """True when a line `width` pixels wide can emit `label`."""
    return frames_for_width(int(width), downsample) >= ctc_frames_needed(label)
