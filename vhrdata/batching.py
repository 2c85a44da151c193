"""Batches of preprocessed lines: the one batch type, padding and width bucketing.

Every path that feeds lines to a model builds its batches here: the store reader, the slow
records path of training, evaluation, prediction and the server. A line's pixels never depend
on the batch it lands in: images are padded on the right with `PAD_VALUE` (white), labels with
0 (the CTC blank), and each line keeps its real width, from which the model masks the padding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vhrdata.charset import Charset
from vhrdata.preprocess import PAD_VALUE

# Bucketing sorts by width inside windows of this many batches: wide enough that neighbours in a
# batch have similar widths, narrow enough that batches still mix the data set.
DEFAULT_BUCKET_BATCHES = 32


@dataclass
class Batch:
    """A padded batch of preprocessed lines.

    Attributes:
        images: uint8 [B, H, Wmax], padded with PAD_VALUE (white) on the right.
        widths: int32 [B], real image widths.
        labels: int32 [B, Lmax], 1-based charset ids, padded with 0 (the CTC blank).
        label_lengths: int32 [B].
        texts: the labels as text.
        ids: record ids.
        indices: int64 [B], positions of the records in their split (empty when not from a store).
    """

    images: np.ndarray
    widths: np.ndarray
    labels: np.ndarray
    label_lengths: np.ndarray
    texts: list[str]
    ids: list[str]
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def padding_fraction(self) -> float:
        """Share of image pixels in the batch that are padding."""
        total = self.images.shape[0] * self.images.shape[2]
        return 0.0 if total == 0 else 1.0 - float(np.asarray(self.widths).sum()) / total

    def head(self, n: int) -> "Batch":
        """The first `n` lines."""
        return Batch(self.images[:n], np.asarray(self.widths)[:n], np.asarray(self.labels)[:n],
                     np.asarray(self.label_lengths)[:n], list(self.texts[:n]), list(self.ids[:n]),
                     np.asarray(self.indices)[:n])


class LabelEncoder:
    """Encodes a batch of texts with one table lookup.

    Args:
        charset: the characters and their ids.
        drop_unknown: leave characters outside the charset out of the labels instead of
            raising `UnknownCharacterError` (for held-out lines scored against a model's charset:
            their texts keep those characters, so they count as errors).
    """

    def __init__(self, charset: Charset, drop_unknown: bool = False):
        self.charset = charset
        self.drop_unknown = drop_unknown
        cps = np.array([ord(c) for c in charset.chars], dtype=np.int64)
        self._table = np.full(int(cps.max()) + 2 if cps.size else 1, -1, dtype=np.int32)
        self._table[cps] = np.arange(1, len(cps) + 1, dtype=np.int32)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(labels int32 [B, Lmax] 0-padded, lengths int32 [B])."""
        texts = list(texts)
        if self.drop_unknown:
            texts = ["".join(c for c in t if c in self.charset) for t in texts]
        lengths = np.fromiter(map(len, texts), dtype=np.int32, count=len(texts))
        max_len = int(lengths.max()) if len(texts) else 0
        cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        # Code points past the table land on its last entry, which is always -1.
        ids = self._table[np.minimum(cps, len(self._table) - 1)]
        if ids.size and int(ids.min()) < 0:
            for t in texts:
                if self.charset.unknown(t):
                    self.charset.encode(t)  # raises UnknownCharacterError naming the characters
        labels = np.zeros((len(texts), max_len), dtype=np.int32)
        labels[np.arange(max_len) < lengths[:, None]] = ids
        return labels, lengths


def round_up(value: int, multiple: int) -> int:
    """`value` rounded up to a multiple of `multiple` (>= 1)."""
    multiple = max(1, int(multiple))
    return -(-int(value) // multiple) * multiple


def pad_images(images: Sequence[np.ndarray], width_multiple: int = 1, out: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Pad (H, W) uint8 images on the right with white: (uint8 [B, H, W'], int32 widths [B]).

    W' is the widest image rounded up to `width_multiple`. `out`, if given, is a buffer of that
    shape to fill (the store reader reuses pooled buffers).
    """
    if not len(images):
        raise ValueError("pad_images needs at least one image")
    widths = np.array([im.shape[1] for im in images], np.int32)
    h = images[0].shape[0]
    wmax = round_up(int(widths.max()), width_multiple)
    batch = np.empty((len(images), h, wmax), np.uint8) if out is None else out
    for i, im in enumerate(images):
        w = im.shape[1]
        batch[i, :, :w] = im
        if w < wmax:
            # Only the padding is filled: writing the whole batch first would double the memory traffic.
            batch[i, :, w:] = PAD_VALUE
    return batch, widths


def make_batch(images: Sequence[np.ndarray], texts: Sequence[str], ids: Sequence[str], charset: Charset,
               width_multiple: int = 1, drop_unknown: bool = False) -> Batch:
    """A Batch of preprocessed (H, W) images and their labels."""
    padded, widths = pad_images(images, width_multiple)
    labels, lengths = LabelEncoder(charset, drop_unknown)(texts)
    return Batch(padded, widths, labels, lengths, list(texts), list(ids))


def pad_batch(batch: Batch, width_multiple: int = 1, label_multiple: int = 1) -> Batch:
    """Pad a batch's images (white) and labels (0) up to multiples, so few distinct shapes occur.

    XLA backends (JAX) compile once per input shape; rounding widths up to e.g. 64 px and label
    lengths to 16 bounds the number of compilations. Widths (and so frame counts) stay real.
    """
    images, labels = batch.images, np.asarray(batch.labels)
    w, l = images.shape[2], labels.shape[1]
    new_w, new_l = round_up(w, width_multiple), round_up(max(l, 1), label_multiple)
    if new_w != w:
        images = np.pad(images, ((0, 0), (0, 0), (0, new_w - w)), constant_values=PAD_VALUE)
    if new_l != l:
        labels = np.pad(labels, ((0, 0), (0, new_l - l)))
    if images is batch.images and labels is batch.labels:
        return batch
    return dataclasses.replace(batch, images=images, labels=labels)


def bucketed_plan(widths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None,
                  window: int | None = None, order: np.ndarray | None = None,
                  drop_remainder: bool = False) -> list[np.ndarray]:
    """Batches of indices in which lines of similar width share a batch.

    `order` (default: all indices, permuted by `rng` when given) is cut into windows of `window`
    lines (rounded up to whole batches; None = 32 batches; 0 = no bucketing), each window is
    sorted by width and cut into batches. With `rng`, the full batches are shuffled again, so an
    epoch does not go narrowest first; a last, smaller batch stays last (or is dropped).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    widths = np.asarray(widths)
    if order is None:
        order = rng.permutation(len(widths)) if rng is not None else np.arange(len(widths), dtype=np.int64)
    window = DEFAULT_BUCKET_BATCHES * batch_size if window is None else int(window)
    if window > 0:
        window = round_up(window, batch_size)
        order = np.array(order, copy=True)
        for start in range(0, len(order), window):
            part = order[start : start + window]
            order[start : start + window] = part[np.argsort(widths[part], kind="stable")]
    plan = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if plan and len(plan[-1]) < batch_size and drop_remainder:
        plan.pop()
    if rng is not None and window > 0:
        full = [b for b in plan if len(b) == batch_size]
        rest = [b for b in plan if len(b) < batch_size]
        plan = [full[k] for k in rng.permutation(len(full))] + rest
    return plan
