"""Per-item random generators: item i of a stream depends only on (seed, stream, i).

This keeps the output identical whatever the number of worker processes or the order in which
they finish, and makes a run of N lines a prefix of a run of more lines with the same seed.
"""

from __future__ import annotations

import numpy as np

TEXT_STREAM = 1
WRITER_STREAM = 2
RENDER_STREAM = 3
LAYOUT_STREAM = 4
CAPTURE_STREAM = 5
CORPUS_STREAM = 6


def check_seed(seed: int) -> int:
    """Return `seed` as an int, or raise ValueError when it is not a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    return int(seed)


def line_rng(seed: int, stream: int, index: int | None = None) -> np.random.Generator:
    """A generator for item `index` of `stream` under `seed` (the whole stream when index is None)."""
    key = (stream,) if index is None else (stream, int(index))
    return np.random.default_rng(np.random.SeedSequence(check_seed(seed), spawn_key=key))
