"""Store statistics: widths after preprocessing, padding wasted per batch, CTC feasibility per split."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vhrdata.errors import StatsError

logger = logging.getLogger(__name__)


def looks_like_store(path: str | Path) -> bool:
    """True when `path` is a folder a store can be opened from (checked by the store package itself)."""
    try:
        from vhrdata.store import is_store  # type: ignore[attr-defined]
    except ImportError:
        return False
    return bool(is_store(path))


def preprocessed_width(width: int, height: int, target_height: int = 64, max_width: int = 2048) -> int:
    """Width of an image after scaling it to `target_height`, capped at `max_width` (no margin crop)."""
    if height <= 0:
        raise ValueError(f"height must be positive. Received: height={height}")
    return int(min(max_width, max(1, round(width * target_height / height))))


def padding_waste(
    widths, batch_size: int, *, bucket_window: int | None = None, seed: int = 0
) -> float:
    """Share of batch pixels that are padding when `widths` are batched and padded to each batch's widest.

    Args:
        widths: image widths (one split).
        batch_size: lines per batch (the last batch may be smaller).
        bucket_window: None for shuffled batches; k > 0 sorts each run of k × batch_size shuffled lines
            by width before cutting batches (what width bucketing does); 0 sorts the whole split.
        seed: the shuffle's seed.

    Returns:
        padded pixels / all batch pixels, in [0, 1).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    w = np.asarray(widths, dtype=np.float64)
    if w.size == 0:
        return 0.0
    w = w[np.random.default_rng(seed).permutation(w.size)]
    if bucket_window is not None:
        chunk = w.size if bucket_window == 0 else bucket_window * batch_size
        w = np.concatenate([np.sort(w[i:i + chunk]) for i in range(0, w.size, chunk)])
    n_full = (w.size // batch_size) * batch_size
    parts = [w[:n_full].reshape(-1, batch_size)] if n_full else []
    padded = sum(float(p.max(axis=1).sum()) * batch_size for p in parts)
    if n_full < w.size:
        rest = w[n_full:]
        padded += float(rest.max()) * rest.size
    return float(1.0 - w.sum() / padded) if padded else 0.0


def store_stats(path, **kwargs):
    """Statistics of a store (records stats plus the store-only sections)."""
    raise StatsError(f"{path}: store statistics need vhrdata.store, which this checkout lacks")
