"""Feed a store split to Keras: a `keras.utils.PyDataset` (every backend) and a `tf.data.Dataset`.

Both yield the same (x, y) per batch: x uint8 [B, H, W, 1], y int32 [B, L] padded with 0.
Both are fed whole numpy batches built by `SplitDataset`, never single samples: per-sample
Python generators are what makes naive tf.data pipelines slow.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    from vhrdata.store.reader import Batch, SplitDataset

_PLAN_KEYS = ("shuffle", "seed", "bucket_window", "shard_index", "num_shards", "drop_remainder")


def batch_to_xy(batch: "Batch") -> tuple[np.ndarray, np.ndarray]:
    """(images[..., None], labels): the model's input and CTC target."""
    return batch.images[..., None], batch.labels


class StorePyDataset(keras.utils.PyDataset):
    """Batches of a store split as a Keras PyDataset; the shuffle advances each epoch.

    Args:
        ds: the split.
        batch_size: records per batch.
        epoch: the first epoch's number (e.g. when resuming training).
        workers: 0 loads batches in the training process; N > 0 uses N Keras worker processes.
        max_queue_size: batches Keras prepares ahead when workers > 0.
        **kwargs: the other arguments of `SplitDataset.batches` (shuffle, seed, bucket_window,
            shard_index, num_shards, charset, transform, drop_remainder).

    Caveat: on the TensorFlow backend `model.fit` fixes the tensor shapes it sees in the first two
    batches, so a width or label length they happen to share breaks a later batch; there, use
    `tf_dataset`, which declares both dimensions variable. JAX and torch are not affected.

    Example:
        >>> train = open_store("store").split("train").keras_dataset(32, seed=0)  # doctest: +SKIP
        >>> model.fit(train, epochs=10)  # doctest: +SKIP
    """

    def __init__(
        self,
        ds: "SplitDataset",
        batch_size: int = 32,
        *,
        epoch: int = 0,
        charset=None,
        transform=None,
        workers: int = 0,
        max_queue_size: int = 10,
        **plan_kwargs,
    ):
        unknown = sorted(set(plan_kwargs) - set(_PLAN_KEYS))
        if unknown:
            raise TypeError(f"keras_dataset got unexpected arguments {unknown}")
        super().__init__(workers=max(1, workers), use_multiprocessing=workers > 0, max_queue_size=max_queue_size)
        self.ds = ds
        self.batch_size = batch_size
        self.epoch = epoch
        self.charset = charset
        self.transform = transform
        self.plan_kwargs = plan_kwargs
        self._plan: list | None = None
        self._plan_epoch = None
        self._length = ds.num_batches(batch_size, **plan_kwargs)

    def __len__(self) -> int:
        return self._length

    def _current_plan(self) -> list:
        if self._plan is None or self._plan_epoch != self.epoch:
            self._plan = self.ds.batch_plan(self.batch_size, epoch=self.epoch, **self.plan_kwargs)
            self._plan_epoch = self.epoch
        return self._plan

    def get_batch(self, index: int) -> "Batch":
        """The Batch behind `self[index]` in the current epoch."""
        plan = self._current_plan()
        if not 0 <= index < len(plan):
            raise IndexError(f"batch {index} out of range ({len(plan)} batches)")
        batch = self.ds.load_batch(plan[index], self.charset)
        if self.transform is not None:
            shard_index = self.plan_kwargs.get("shard_index", 0)
            seed = self.plan_kwargs.get("seed", 0)
            batch = self.transform(batch, np.random.default_rng((seed, self.epoch, shard_index, index)))
        return batch

    def __getitem__(self, index: int):
        return batch_to_xy(self.get_batch(index))

    def on_epoch_end(self) -> None:
        self.epoch += 1


def make_tf_dataset(
    ds: "SplitDataset",
    batch_size: int = 32,
    *,
    epoch: int = 0,
    prefetch: int | None = None,
    **batch_kwargs,
):
    """A tf.data.Dataset over `ds.batches(...)`; every new iteration runs the next epoch.

    Args:
        ds: the split.
        batch_size: records per batch.
        epoch: the first epoch's number.
        prefetch: batches to prepare ahead; None lets tf.data tune it.
        **batch_kwargs: the other arguments of `SplitDataset.batches`.
    """
    import tensorflow as tf

    epochs = itertools.count(epoch)

    def generate():
        for batch in ds.batches(batch_size, epoch=next(epochs), **batch_kwargs):
            yield batch_to_xy(batch)

    plan_kwargs = {k: v for k, v in batch_kwargs.items() if k in _PLAN_KEYS}
    n = ds.num_batches(batch_size, **plan_kwargs)
    signature = (
        tf.TensorSpec(shape=(None, ds.height, None, 1), dtype=tf.uint8),
        tf.TensorSpec(shape=(None, None), dtype=tf.int32),
    )
    data = tf.data.Dataset.from_generator(generate, output_signature=signature)
    data = data.apply(tf.data.experimental.assert_cardinality(n))
    return data.prefetch(tf.data.AUTOTUNE if prefetch is None else prefetch)
