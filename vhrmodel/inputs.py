"""Batches into Keras: the one `(x, y)` contract, the two input paths of training, and adapters.

The contract, for every backend and every path (`to_keras`):

- x = {"images": uint8 [B, H, W, 1], "widths": int32 [B]}: the padded batch and each line's
  own width (the model masks everything past it);
- y = int32 [B, L]: 1-based character ids, padded with 0, for `vhrmodel.losses.CTCLoss`.

Two input paths produce `vhrdata.batching.Batch`es for training:

- the store (default): preprocessed batches stream from the LMDB store through its reader;
  augmentation runs as the reader's per-batch `transform`, in its worker processes;
- the records (`--from-records`): `records.parquet` is read and every image is decoded and
  preprocessed every epoch with `vhrdata.preprocess.preprocess_image`, the function the store
  was built with. It exists for parity checks and to measure what the store saves.

`StorePyDataset` and `store_tf_dataset` give a store split to `model.fit` directly.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import keras
import numpy as np

from vhrdata.batching import Batch, LabelEncoder, bucketed_plan, make_batch, pad_batch
from vhrdata.charset import Charset
from vhrdata.workers import ordered_map
from vhrmodel.config import TrainConfig, train_alphabet  # noqa: F401 - train_alphabet lives in config, Keras-free
from vhrmodel.errors import TrainingError

_PLAN_KEYS = ("shuffle", "seed", "bucket_window", "shard_index", "num_shards", "drop_remainder")


def to_keras(batch: Batch, width_multiple: int = 1, label_multiple: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(x, y) of a batch: the model's inputs and the CTC target (see the module docstring).

    `width_multiple` and `label_multiple` round the padded shapes up, which bounds the number of
    XLA compilations on JAX; the model's output on each line's own frames does not change.
    """
    batch = pad_batch(batch, width_multiple, label_multiple)
    x = {"images": batch.images[..., None], "widths": np.asarray(batch.widths, np.int32)}
    return x, np.asarray(batch.labels, np.int32)


def _tf_signature(height: int):
    import tensorflow as tf

    return (
        {"images": tf.TensorSpec((None, height, None, 1), tf.uint8), "widths": tf.TensorSpec((None,), tf.int32)},
        tf.TensorSpec((None, None), tf.int32),
    )


def tf_epochs_dataset(epoch_batches: Callable[[int], Iterator[Batch]], steps: int | None, height: int,
                      first_epoch: int = 0):
    """A tf.data.Dataset over `epoch_batches(epoch)`; each new pass runs the next epoch.

    `steps` is the number of batches of one epoch. None makes the dataset endless (each data
    epoch follows the last), for `fit(steps_per_epoch=...)` with fewer steps than an epoch holds:
    Keras then keeps one iterator across its epochs, which a one-epoch dataset would run out of.

    Used with the TensorFlow backend instead of a PyDataset: Keras would infer the tensor
    shapes of a PyDataset from its first two batches and fix any dimension they happen to
    share (a label length, a width), failing on the first batch that differs. Here both
    dimensions are declared variable.
    """
    import tensorflow as tf

    epochs = itertools.count(first_epoch)

    def generate():
        for b in epoch_batches(next(epochs)):
            yield to_keras(b)

    data = tf.data.Dataset.from_generator(generate, output_signature=_tf_signature(height))
    if steps is None:
        data = data.repeat()
    else:
        data = data.apply(tf.data.experimental.assert_cardinality(steps))
    options = tf.data.Options()
    # Under tf.distribute each worker already reads only its own shard of the store.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return data.with_options(options).prefetch(2)


def endless_batches(epoch_batches: Callable[[int], Iterator[Batch]], first_epoch: int = 0,
                    width_multiple: int = 64, label_multiple: int = 16) -> Iterator[tuple[dict, np.ndarray]]:
    """Endless (x, y), epoch after epoch, for backends other than TensorFlow.

    `fit` reads `steps_per_epoch` batches per epoch from it. Worker processes, if any, belong to
    the store reader, which starts them safely (forkserver) once a framework is loaded.
    """
    for epoch in itertools.count(first_epoch):
        for b in epoch_batches(epoch):
            yield to_keras(b, width_multiple, label_multiple)


# --------------------------------------------------------------------------------------------
# Adapters: a store split straight into model.fit


class StorePyDataset(keras.utils.PyDataset):
    """Batches of a store split as a Keras PyDataset, in the `to_keras` contract.

    The shuffle advances each epoch.

    Args:
        ds: the split (`open_store(path).split(name)`).
        batch_size: records per batch.
        epoch: the first epoch's number (e.g. when resuming training).
        charset: encodes the labels (default: the store's).
        transform: `transform(batch, rng) -> batch`, e.g. a `BatchAugmenter`.
        workers: 0 loads batches in the training process; N > 0 uses N Keras worker processes.
        max_queue_size: batches Keras prepares ahead when workers > 0.
        **plan_kwargs: the other arguments of `SplitDataset.batch_plan` (shuffle, seed,
            bucket_window, shard_index, num_shards, drop_remainder).

    Caveat: on the TensorFlow backend `model.fit` fixes the tensor shapes it sees in the first
    two batches; there, use `store_tf_dataset`, which declares widths and label lengths variable.

    Example:
        >>> train = StorePyDataset(open_store("store").split("train"), 32, seed=0)  # doctest: +SKIP
        >>> model.fit(train, epochs=10)  # doctest: +SKIP
    """

    def __init__(self, ds, batch_size: int = 32, *, epoch: int = 0, charset: Charset | None = None,
                 transform: Callable | None = None, workers: int = 0, max_queue_size: int = 10, **plan_kwargs):
        unknown = sorted(set(plan_kwargs) - set(_PLAN_KEYS))
        if unknown:
            raise TypeError(f"StorePyDataset got unexpected arguments {unknown}")
        super().__init__(workers=max(1, workers), use_multiprocessing=workers > 0, max_queue_size=max_queue_size)
        self.ds = ds
        self.batch_size = batch_size
        self.epoch = epoch
        self.charset = charset
        self.transform = transform
        self.plan_kwargs = plan_kwargs
        self._plan: list | None = None
        self._plan_epoch: int | None = None
        self._length = ds.num_batches(batch_size, **plan_kwargs)

    def __len__(self) -> int:
        return self._length

    def get_batch(self, index: int) -> Batch:
        """The Batch behind `self[index]` in the current epoch."""
        if self._plan is None or self._plan_epoch != self.epoch:
            self._plan = self.ds.batch_plan(self.batch_size, epoch=self.epoch, **self.plan_kwargs)
            self._plan_epoch = self.epoch
        if not 0 <= index < len(self._plan):
            raise IndexError(f"batch {index} out of range ({len(self._plan)} batches)")
        batch = self.ds.load_batch(self._plan[index], self.charset)
        if self.transform is not None:
            seed = (self.plan_kwargs.get("seed", 0), self.epoch, self.plan_kwargs.get("shard_index", 0), index)
            batch = self.transform(batch, np.random.default_rng(seed))
        return batch

    def __getitem__(self, index: int):
        return to_keras(self.get_batch(index))

    def on_epoch_end(self) -> None:
        self.epoch += 1


def store_tf_dataset(ds, batch_size: int = 32, *, epoch: int = 0, **batch_kwargs):
    """A tf.data.Dataset over a store split's batches, in the `to_keras` contract.

    Takes the arguments of `SplitDataset.batches`. Each pass over the dataset (each Keras epoch,
    or `.repeat()`) starts the next epoch's shuffle.
    """
    plan_kwargs = {k: v for k, v in batch_kwargs.items() if k in _PLAN_KEYS}
    steps = ds.num_batches(batch_size, **plan_kwargs)
    return tf_epochs_dataset(lambda e: ds.batches(batch_size, epoch=e, **batch_kwargs), steps, ds.height, epoch)


# --------------------------------------------------------------------------------------------
# The input of one training run


@dataclass
class DataSource:
    """Training and validation input of one run, whichever path produces it."""

    epoch_batches: Callable[[int], Iterator[Batch]]  # the batches of one epoch, in order
    steps: int  # batches per epoch
    val_batches: Callable[[], Iterator[Batch]]  # un-augmented validation batches
    train_size: int
    val_size: int
    description: dict[str, Any] = field(default_factory=dict)


def split_counts(store) -> dict[str, int]:
    """Lines per split of a store, e.g. {"train": 1350, "val": 150}."""
    return {name: int(info.get("count", 0)) for name, info in store.index.get("splits", {}).items()}


def check_splits(store, config: TrainConfig) -> None:
    """Refuse a store without lines in the train or val split, saying how to make them."""
    counts = split_counts(store)
    for name in (config.train_split, config.val_split):
        if not counts.get(name):
            raise TrainingError(
                f"store {store.path} has no {name!r} lines (lines per split: {counts}); re-run `vhrdata split` "
                f"with a non-zero ratio for {name!r}, then `vhrdata build-lmdb`"
            )


def relabeled(batches: Iterable[Batch], encoder: LabelEncoder, limit: int | None = None) -> Iterator[Batch]:
    """Batches with labels re-encoded by `encoder`, stopping after `limit` lines."""
    seen = 0
    for b in batches:
        n = len(b) if limit is None else min(len(b), limit - seen)
        if n <= 0:
            return
        b = b.head(n) if n < len(b) else b
        labels, lengths = encoder(b.texts)
        yield Batch(b.images, b.widths, labels, lengths, b.texts, b.ids, b.indices)
        seen += n


def store_source(store, config: TrainConfig, charset: Charset, augmenter: Callable | None,
                 num_shards: int = 1, shard_index: int = 0) -> DataSource:
    """The default path: stream preprocessed batches from the LMDB store.

    `config.workers` processes each read, pad and augment whole batches (the store reader is
    picklable and reopens its shards per process).
    """
    check_splits(store, config)
    train_split = store.split(config.train_split)
    val_split = store.split(config.val_split)
    plan: dict[str, Any] = dict(shuffle=True, seed=config.seed)
    if num_shards > 1:
        plan.update(shard_index=shard_index, num_shards=num_shards)
    val_encoder = LabelEncoder(charset, drop_unknown=True)

    def epoch_batches(e: int) -> Iterator[Batch]:
        return train_split.batches(config.batch_size, epoch=e, charset=charset, transform=augmenter,
                                   workers=config.workers, **plan)

    def val_batches() -> Iterator[Batch]:
        return relabeled(val_split.batches(config.batch_size, shuffle=False), val_encoder, config.val_limit)

    return DataSource(
        epoch_batches=epoch_batches,
        steps=train_split.num_batches(config.batch_size, **plan),
        val_batches=val_batches,
        train_size=len(train_split) // num_shards,
        val_size=len(val_split) if config.val_limit is None else min(len(val_split), config.val_limit),
        description={"input": "lmdb"},
    )


class RecordsBatches:
    """The slow input path: batches decoded and preprocessed from the image files every time.

    Args:
        frame: records rows (columns id, path, text, width, height).
        settings: the store's `PreprocessSettings` (applied with `preprocess_image`).
        charset: encodes the labels.
        batch_size: lines per batch.
        shuffle: bucket-shuffle every epoch (training) or keep the order (validation).
        seed: shuffling seed.
        transform: `transform(batch, rng) -> batch` (augmentation); rng is seeded by
            (seed, epoch, 0, batch number), as the store reader seeds it.
        drop_unknown: leave characters outside `charset` out of the labels (validation).
    """

    def __init__(self, frame, settings, charset: Charset, batch_size: int, shuffle: bool, seed: int = 0,
                 transform: Callable | None = None, drop_unknown: bool = False):
        self.settings = settings
        self.charset = charset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.transform = transform
        self.drop_unknown = drop_unknown
        self.paths = list(frame["path"])
        self.texts = list(frame["text"])
        self.ids = list(frame["id"])
        # Width after resizing to the store height, for bucketing without decoding.
        h = np.maximum(np.asarray(frame["height"], np.float64), 1)
        self.est_widths = np.minimum(np.asarray(frame["width"]) * settings.height / h, settings.max_width)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The batches of indices of one epoch."""
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        return bucketed_plan(self.est_widths, self.batch_size, rng, window=None if self.shuffle else 0)

    def get_batch(self, idx: np.ndarray, epoch: int, number: int) -> Batch:
        from vhrdata.preprocess import preprocess_image

        images = [preprocess_image(self.paths[j], self.settings) for j in idx]
        batch = make_batch(images, [self.texts[j] for j in idx], [self.ids[j] for j in idx], self.charset,
                           drop_unknown=self.drop_unknown)
        if self.transform is not None:
            batch = self.transform(batch, np.random.default_rng((self.seed, epoch, 0, number)))
        return batch

    def epoch_batches(self, epoch: int, workers: int = 0) -> Iterator[Batch]:
        """Every batch of `epoch`, built `2 * workers` ahead by threads (decoding releases the GIL)."""
        jobs = ((idx, epoch, k) for k, idx in enumerate(self.plan(epoch)))
        if workers <= 0:
            yield from ordered_map(self.get_batch, jobs)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from ordered_map(self.get_batch, jobs, pool, ahead=2 * workers)


def records_location(store, records: str | Path | None) -> Path:
    """Where the store's records.parquet is: `records` if given, else what the store index recorded."""
    from vhrdata.records import records_path

    if records is not None:
        path = records_path(records)
    else:
        found = (store.index.get("build") or {}).get("records")
        if not found:
            raise TrainingError(
                "the store does not record which records.parquet it was built from; "
                "pass --records DIR (the ingest/split output folder) with --from-records, or train from the store"
            )
        path = records_path(found)
    if not path.exists():
        raise TrainingError(f"records file {path} does not exist; pass --records DIR, or train from the store")
    return path


def records_source(store, config: TrainConfig, charset: Charset, augmenter: Callable | None,
                   records: str | Path | None = None) -> DataSource:
    """Slow path: decode and preprocess the store's lines from their image files every epoch.

    The lines are those of the store's splits (matched by id), so both paths train on the same
    data, with the store's preprocessing settings. Batches are built by `config.workers` threads.
    """
    from vhrdata.records import read_records

    check_splits(store, config)
    path = records_location(store, records)
    df = read_records(path, require_split=True).drop_duplicates("id").set_index("id")
    frames = {}
    for name in (config.train_split, config.val_split):
        ids = [sample.id for sample in store.split(name)]
        rows = df.reindex(ids)
        missing = rows.index[rows["path"].isna()].tolist()
        if missing:
            raise TrainingError(f"{len(missing)} {name} lines of the store are not in {path} (e.g. {missing[0]!r}); "
                                "pass the records the store was built from with --records")
        frames[name] = rows.reset_index()
    provider = RecordsBatches(frames[config.train_split], store.settings, charset, config.batch_size, shuffle=True,
                              seed=config.seed, transform=augmenter)
    val_frame = frames[config.val_split]
    if config.val_limit is not None:
        val_frame = val_frame.iloc[: config.val_limit]
    val = RecordsBatches(val_frame, store.settings, charset, config.batch_size, shuffle=False, drop_unknown=True)
    return DataSource(epoch_batches=lambda e: provider.epoch_batches(e, config.workers), steps=len(provider.plan(0)),
                      val_batches=lambda: val.epoch_batches(0), train_size=len(frames[config.train_split]),
                      val_size=len(val_frame), description={"input": "records", "records": str(path)})
