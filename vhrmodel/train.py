"""Training from a store: `train()` behind `vhrmodel train`.

Two input paths feed the same loop:

- fast: batches stream from the LMDB store through its reader (`store.split(...).keras_dataset`),
  already preprocessed; augmentation runs as the reader's per-batch `transform` in its workers.
- slow (`fast=False`): the store's `records.parquet` is read and every image is decoded and
  preprocessed every epoch with `vhrdata.preprocess.preprocess_image`, the function the store
  was built with. It exists for parity checks and to measure what the store saves.

Training uses `FramesCTCLoss`: each line's CTC alignment is limited to its own frames
(width // downsample), never the batch padding, so that prediction at batch size 1 sees what
training saw.

The best checkpoint is chosen by validation CER, not by loss: CTC loss keeps falling on
confidently wrong lines long after the text stops improving.

A run folder holds `model.keras` (best by val CER), `last.keras` (with optimizer state),
`history.csv`, `train.json`, `state.json` (what `resume` needs), `charlm.json` (a character
n-gram LM of the training labels only, for beam search), `samples/` (a PNG grid of
validation predictions per epoch) and `tensorboard/`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import keras
import numpy as np

from vhrdata.charset import Charset
from vhrdata.errors import TrainingError
from vhrmodel.artifact import load_model, save_model, settings_to_dict, transfer_weights
from vhrmodel.augment import PAD_VALUE, AugmentConfig, BatchAugmenter

log = logging.getLogger(__name__)

BEST_MODEL = "model.keras"
LAST_MODEL = "last.keras"
HISTORY = "history.csv"
SUMMARY = "train.json"
STATE = "state.json"
CHAR_LM = "charlm.json"

ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainConfig:
    """What `train` does; every field has a CLI option of the same name.

    Args:
        preset: model preset (`vhrmodel.presets.PRESETS`); None with `init_from` keeps that
            model's architecture, else "small".
        epochs: last epoch to train (with `resume`, the total, not the number of new epochs).
        batch_size: lines per batch (per replica when several GPUs are used).
        lr: initial Adam learning rate.
        fast: stream preprocessed batches from the LMDB store (else decode images every epoch).
        augment: augment training batches (`augment_config`); validation never is.
        augment_config: augmentation settings; None = `AugmentConfig()` defaults.
        workers: reader worker processes (fast) or threads (slow) that build batches.
        seed: shuffling, augmentation and weight-initialisation seed.
        steps_per_epoch: cap on training steps per epoch (None = the whole split).
        val_limit: validate on at most this many lines (None = the whole split).
        early_stopping: epochs without val CER improvement before stopping (0 = never).
        reduce_lr_patience: epochs without val loss improvement before the learning rate is halved.
        min_lr: lower bound of the learning rate.
        clipnorm: gradient norm clipping (LSTMs under CTC occasionally spike).
        bn_momentum: momentum of every BatchNormalization layer's moving statistics during
            training; None keeps the layers' own (0.99). Short runs (a few hundred steps) need
            a lower value such as 0.9, or the inference-mode statistics lag the weights and
            validation looks far worse than training.
        grid_samples: validation lines drawn in the per-epoch PNG grid (0 = no grid).
        time_limit: stop after the epoch during which this many seconds of this call have
            passed (None = no limit); the run can be resumed later.
        tensorboard: write TensorBoard logs (TensorFlow must be importable).
        train_split: split to train on.
        val_split: split to validate on.
    """

    preset: str | None = None
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    fast: bool = True
    augment: bool = True
    augment_config: AugmentConfig | None = None
    workers: int = 1
    seed: int = 0
    steps_per_epoch: int | None = None
    val_limit: int | None = None
    early_stopping: int = 10
    reduce_lr_patience: int = 4
    min_lr: float = 1e-5
    clipnorm: float | None = 5.0
    bn_momentum: float | None = None
    grid_samples: int = 8
    time_limit: float | None = None
    tensorboard: bool = True
    train_split: str = "train"
    val_split: str = "val"

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive. Received: lr={self.lr}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0. Received: workers={self.workers}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment_config"] = (self.augment_config or AugmentConfig()).to_dict() if self.augment else None
        return d


# --------------------------------------------------------------------------------------------
# Batches


@dataclass
class LineBatch:
    """A padded batch of preprocessed lines (same fields as the store reader's batches)."""

    images: np.ndarray  # uint8 [B, H, W], padded with PAD_VALUE
    widths: np.ndarray  # int32 [B]
    labels: np.ndarray  # int32 [B, L], 0-padded
    label_lengths: np.ndarray  # int32 [B]
    texts: list[str]
    ids: list[str]
    epoch: int = 0


def make_batch(images: Sequence[np.ndarray], texts: Sequence[str], ids: Sequence[str], charset: Charset) -> LineBatch:
    """Pad preprocessed (H, W) images with white and encode their labels."""
    widths = np.array([im.shape[1] for im in images], np.int32)
    h = images[0].shape[0]
    batch = np.full((len(images), h, int(widths.max())), PAD_VALUE, np.uint8)
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1]] = im
    encoded = [charset.encode(t) for t in texts]
    lengths = np.array([len(e) for e in encoded], np.int32)
    labels = np.zeros((len(images), max(1, int(lengths.max(initial=0)))), np.int32)
    for i, e in enumerate(encoded):
        labels[i, : len(e)] = e
    return LineBatch(batch, widths, labels, lengths, list(texts), list(ids))


def bucket_order(widths: Sequence[int], batch_size: int, rng: np.random.Generator, window: int = 50) -> list[np.ndarray]:
    """Shuffled batches of indices in which lines of similar width share a batch.

    Lines are shuffled, cut into windows of `window` batches, sorted by width inside each
    window and batched; the batches are shuffled again. Padding (wasted compute) shrinks while
    every epoch still sees a different mix.
    """
    widths = np.asarray(widths)
    order = rng.permutation(len(widths))
    span = batch_size * window
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(widths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


# --------------------------------------------------------------------------------------------
# Loss and Keras datasets: y carries each line's frame count


@keras.saving.register_keras_serializable(package="vhr")
class FramesCTCLoss(keras.losses.Loss):
    """CTC loss that uses each line's own frame count, carried in column 0 of y.

    y_true is int32 [B, 1 + L]: `y[:, 0]` is the number of valid output frames of the line
    (its image width // downsample) and `y[:, 1:]` its 1-based label ids, 0-padded. Limiting CTC
    to the real frames keeps the alignment off the white batch padding; trained on the padded
    length, a BiLSTM learns to emit characters late, inside the padding, and its output then
    depends on how much padding the batch happened to have (batch 1 at prediction has none).

    Args:
        name: str. Loss name.
        **kwargs: standard `keras.losses.Loss` arguments.

    Example:
        >>> import numpy as np
        >>> y = np.array([[4, 1, 2, 0]])          # 4 frames, label [1, 2]
        >>> float(FramesCTCLoss()(y, np.zeros((1, 6, 3), "float32"))) > 0
        True

    Reference:
        Graves et al., "Connectionist Temporal Classification", ICML 2006.
    """

    def __init__(self, name: str = "frames_ctc_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        from vhrmodel.losses import ctc_loss

        y_true = keras.ops.cast(y_true, "int32")
        frames = keras.ops.minimum(y_true[:, 0], keras.ops.shape(y_pred)[1])
        labels = y_true[:, 1:]
        label_lengths = keras.ops.sum(keras.ops.cast(keras.ops.not_equal(labels, 0), "int32"), axis=-1)
        return ctc_loss(labels, y_pred, label_lengths, frames)

    def get_config(self):
        return super().get_config()


def frames_target(widths: np.ndarray, labels: np.ndarray, downsample: int) -> np.ndarray:
    """y for `FramesCTCLoss`: int32 [B, 1 + L] = [width // downsample, labels...]."""
    frames = (np.asarray(widths, np.int64) // downsample).astype(np.int32)
    return np.concatenate([frames[:, None], np.asarray(labels, np.int32)], axis=1)


def pad_batch(batch, width_multiple: int = 1, label_multiple: int = 1):
    """Pad a batch's images (white) and labels (0) up to multiples, so few distinct shapes occur.

    XLA backends (JAX) compile once per input shape; rounding widths up to e.g. 64 px and label
    lengths to 16 bounds the number of compilations. Frame counts still come from the real widths.
    """
    images, labels = batch.images, batch.labels
    w, l = images.shape[2], labels.shape[1]
    new_w = -(-w // width_multiple) * width_multiple
    new_l = -(-l // label_multiple) * label_multiple
    if new_w != w:
        images = np.pad(images, ((0, 0), (0, 0), (0, new_w - w)), constant_values=PAD_VALUE)
    if new_l != l:
        labels = np.pad(labels, ((0, 0), (0, new_l - l)))
    if images is batch.images and labels is batch.labels:
        return batch
    return dataclasses.replace(batch, images=images, labels=labels) if dataclasses.is_dataclass(batch) \
        else LineBatch(images, batch.widths, labels, batch.label_lengths, list(batch.texts), list(batch.ids))


def generator_input(epoch_batches: Callable[[int], Iterator[Any]], downsample: int, first_epoch: int = 0,
                    width_multiple: int = 64, label_multiple: int = 16) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (x, y) batches, epoch after epoch, for backends other than TensorFlow.

    `fit` reads `steps_per_epoch` batches per epoch from it. Worker processes, if any, belong to
    the store reader, which starts them safely (forkserver) once a framework is loaded.
    """
    epoch = first_epoch
    while True:
        for b in epoch_batches(epoch):
            b = pad_batch(b, width_multiple, label_multiple)
            yield b.images[..., None], frames_target(b.widths, b.labels, downsample)
        epoch += 1


def tf_input(epoch_batches: Callable[[int], Iterator[Any]], steps: int, height: int, downsample: int,
             first_epoch: int = 0):
    """A tf.data.Dataset over `epoch_batches(epoch)`; each new pass runs the next epoch.

    Used with the TensorFlow backend instead of a PyDataset: Keras would infer the tensor
    shapes of a PyDataset from its first two batches and fix any dimension they happen to
    share (a label length, a width), failing on the first batch that differs. Here both
    dimensions are declared variable.
    """
    import itertools

    import tensorflow as tf

    epochs = itertools.count(first_epoch)

    def generate():
        for b in epoch_batches(next(epochs)):
            yield b.images[..., None], frames_target(b.widths, b.labels, downsample)

    signature = (tf.TensorSpec((None, height, None, 1), tf.uint8), tf.TensorSpec((None, None), tf.int32))
    data = tf.data.Dataset.from_generator(generate, output_signature=signature)
    data = data.apply(tf.data.experimental.assert_cardinality(steps))
    options = tf.data.Options()
    # Under tf.distribute each worker already reads only its own shard of the store.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return data.with_options(options).prefetch(2)


def _threaded(get_batch: Callable[[int], Any], n: int, workers: int) -> Iterator[Any]:
    """get_batch(0..n-1) in order, computed `workers` threads ahead."""
    if workers <= 0:
        yield from (get_batch(i) for i in range(n))
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque(pool.submit(get_batch, i) for i in range(min(n, 2 * workers)))
        nxt = len(pending)
        while pending:
            batch = pending.popleft().result()
            if nxt < n:
                pending.append(pool.submit(get_batch, nxt))
                nxt += 1
            yield batch


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
        epoch: the first epoch's number (its shuffle), e.g. when resuming.
    """

    def __init__(self, frame, settings, charset: Charset, batch_size: int, shuffle: bool, seed: int = 0,
                 transform: Callable | None = None, epoch: int = 0):
        self.settings = settings
        self.charset = charset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.transform = transform
        self.paths = list(frame["path"])
        self.texts = list(frame["text"])
        self.ids = list(frame["id"])
        # Width after resizing to the store height, for bucketing without decoding.
        h = np.maximum(np.asarray(frame["height"], np.float64), 1)
        self.est_widths = np.minimum(np.asarray(frame["width"]) * settings.height / h, settings.max_width)
        self.epoch = epoch
        self._plan()

    def _plan(self) -> None:
        if self.shuffle:
            self.plan = bucket_order(self.est_widths, self.batch_size, np.random.default_rng([self.seed, self.epoch]))
        else:
            idx = np.arange(len(self.paths))
            self.plan = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]

    def __len__(self) -> int:
        return len(self.plan)

    def get_batch(self, i: int) -> LineBatch:
        from vhrdata.preprocess import preprocess_image

        idx = self.plan[i]
        images = [preprocess_image(self.paths[j], self.settings) for j in idx]
        batch = make_batch(images, [self.texts[j] for j in idx], [self.ids[j] for j in idx], self.charset)
        batch.epoch = self.epoch
        if self.transform is not None:
            batch = self.transform(batch, np.random.default_rng((self.seed, self.epoch, 0, i)))
        return batch

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._plan()

    def epoch_batches(self, epoch: int, workers: int = 0) -> Iterator[LineBatch]:
        """Every batch of `epoch`, built by `workers` threads (image decoding releases the GIL)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._plan()
        return _threaded(self.get_batch, len(self.plan), workers)


# --------------------------------------------------------------------------------------------
# Sources: the store (fast) or its records (slow)


@dataclass
class DataSource:
    """Training and validation input of one run, whichever path produces it."""

    epoch_batches: Callable[[int], Iterator[Any]]  # the batches of one epoch, in order
    steps: int  # batches per epoch
    val_batches: Callable[[], Iterator[LineBatch]]  # un-augmented validation batches
    train_size: int
    val_size: int
    description: dict[str, Any] = field(default_factory=dict)


def split_counts(store) -> dict[str, int]:
    """Lines per split of a store, e.g. {"train": 1350, "val": 150}."""
    return {name: int(info.get("count", 0)) for name, info in store.index.get("splits", {}).items()}


def _check_splits(store, config: TrainConfig) -> None:
    counts = split_counts(store)
    for name in (config.train_split, config.val_split):
        if not counts.get(name):
            raise TrainingError(
                f"store {store.path} has no {name!r} lines (lines per split: {counts}); re-run `vhrdata split` "
                f"with a non-zero ratio for {name!r}, then `vhrdata build-lmdb`"
            )


def _limited(batches: Iterable, limit: int | None) -> Iterator[LineBatch]:
    seen = 0
    for b in batches:
        n = len(b.texts) if limit is None else min(len(b.texts), limit - seen)
        if n <= 0:
            return
        yield LineBatch(b.images[:n], np.asarray(b.widths)[:n], np.asarray(b.labels)[:n],
                        np.asarray(b.label_lengths)[:n], list(b.texts[:n]), list(b.ids[:n]))
        seen += n


def store_source(store, config: TrainConfig, charset: Charset, augmenter: Callable | None,
                 num_shards: int = 1, shard_index: int = 0) -> DataSource:
    """Fast path: stream preprocessed batches from the LMDB store.

    `config.workers` processes each read, pad and augment whole batches (the store reader is
    picklable and reopens its shards per process).
    """
    _check_splits(store, config)
    train_split = store.split(config.train_split)
    val_split = store.split(config.val_split)
    plan = dict(shuffle=True, seed=config.seed)
    if num_shards > 1:
        plan.update(shard_index=shard_index, num_shards=num_shards)
    def epoch_batches(e: int) -> Iterator[Any]:
        return train_split.batches(config.batch_size, epoch=e, charset=charset, transform=augmenter,
                                   workers=config.workers, **plan)

    def val_batches() -> Iterator[LineBatch]:
        return _limited(val_split.batches(config.batch_size, shuffle=False, charset=charset), config.val_limit)

    return DataSource(
        epoch_batches=epoch_batches,
        steps=train_split.num_batches(config.batch_size, **plan),
        val_batches=val_batches,
        train_size=len(train_split) // num_shards,
        val_size=len(val_split) if config.val_limit is None else min(len(val_split), config.val_limit),
        description={"input": "lmdb"},
    )


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
                "pass --records DIR (the ingest/split output folder) for the slow input path, or use --fast"
            )
        path = records_path(found)
    if not path.exists():
        raise TrainingError(f"records file {path} does not exist; pass --records DIR or use --fast")
    return path


def records_source(store, config: TrainConfig, charset: Charset, augmenter: Callable | None,
                   records: str | Path | None = None, epoch: int = 0) -> DataSource:
    """Slow path: decode and preprocess the store's lines from their image files every epoch.

    The lines are those of the store's splits (matched by id), so both paths train on the same
    data, with the store's preprocessing settings. Batches are built by `config.workers` threads.
    """
    from vhrdata.records import read_records

    _check_splits(store, config)
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
                              seed=config.seed, transform=augmenter, epoch=epoch)
    val_frame = frames[config.val_split]
    if config.val_limit is not None:
        val_frame = val_frame.iloc[: config.val_limit]
    val = RecordsBatches(val_frame, store.settings, charset, config.batch_size, shuffle=False)

    def val_batches() -> Iterator[LineBatch]:
        return (val.get_batch(i) for i in range(len(val)))

    return DataSource(epoch_batches=lambda e: provider.epoch_batches(e, config.workers), steps=len(provider),
                      val_batches=val_batches, train_size=len(frames[config.train_split]),
                      val_size=len(val_frame), description={"input": "records", "records": str(path)})


# --------------------------------------------------------------------------------------------
# Callbacks


def predict_texts(model, images: np.ndarray, widths: np.ndarray, charset: Charset,
                  width_multiple: int = 1) -> tuple[list[str], np.ndarray]:
    """Greedy-decoded texts and logits of a uint8 [B, H, W] batch (frames past each width ignored).

    `width_multiple` pads the batch width up (white) to bound the shapes an XLA backend compiles.
    """
    from vhrmodel.decoding import ctc_greedy_decode

    w = images.shape[2]
    if w % width_multiple:
        images = np.pad(images, ((0, 0), (0, 0), (0, width_multiple - w % width_multiple)), constant_values=PAD_VALUE)
    logits = np.asarray(model.predict_on_batch(images[..., None]))
    lengths = np.clip(np.asarray(widths) // int(model.downsample), 1, logits.shape[1])
    return ctc_greedy_decode(logits, charset, logit_lengths=lengths), logits


class ValidationCER(keras.callbacks.Callback):
    """After each epoch: val CER, WER, SER and CTC loss into the logs; saves the best model by CER.

    Runs before the callbacks that read its logs (ReduceLROnPlateau, EarlyStopping, CSVLogger).

    Args:
        source: where the validation batches come from.
        best_path: where the best model is saved.
        charset: decodes the output.
        best: the best CER so far (when resuming).
    """

    def __init__(self, source: DataSource, best_path: Path, charset: Charset, best: float | None = None,
                 best_epoch: int | None = None, width_multiple: int = 1):
        super().__init__()
        self.source = source
        self.width_multiple = width_multiple
        self.best_path = best_path
        self.charset = charset
        self.best = math.inf if best is None else float(best)
        self.best_epoch = best_epoch
        self.seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        from vhrmodel.losses import ctc_loss
        from vhrmodel.metrics import evaluate_texts

        t0 = time.perf_counter()
        refs, hyps, losses = [], [], []
        for b in self.source.val_batches():
            texts, logits = predict_texts(self.model, b.images, b.widths, self.charset, self.width_multiple)
            refs += b.texts
            hyps += texts
            frames = np.minimum(np.asarray(b.widths) // self.model.downsample, logits.shape[1]).astype(np.int32)
            losses.append(np.asarray(ctc_loss(b.labels, logits, b.label_lengths, frames)))
        metrics = evaluate_texts(refs, hyps)
        cer = float(metrics["cer"])
        if logs is not None:
            logs["val_loss"] = float(np.mean(np.concatenate(losses))) if losses else float("nan")
            logs["val_cer"] = cer
            logs["val_wer"] = float(metrics["wer"])
            logs["val_ser"] = float(metrics["ser"])
        if cer < self.best:
            self.best, self.best_epoch = cer, epoch + 1
            save_model(self.model, self.best_path, include_optimizer=False)
            log.info("epoch %d: val CER improved to %.4f, saved %s", epoch + 1, cer, self.best_path)
        self.seconds += time.perf_counter() - t0


def write_prediction_grid(path: Path, images: Sequence[np.ndarray], truths: Sequence[str], preds: Sequence[str],
                          title: str = "") -> Path:
    """A PNG with one row per line: the image, then prediction (green if right, red if not) and truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(n, 1, figsize=(12, 1.3 * n + 0.4), squeeze=False)
    for ax, img, truth, pred in zip(axes[:, 0], images, truths, preds):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"pred: {pred}\ntrue: {truth}", fontsize=8, loc="left", color="green" if pred == truth else "red")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


class PredictionGrid(keras.callbacks.Callback):
    """Each epoch, a PNG grid of the first validation lines with prediction and truth.

    Args:
        source: where the validation lines come from (the first `samples` are drawn).
        out_dir: where `epoch_NNN.png` files go.
        charset: decodes the output.
        samples: how many lines.
    """

    def __init__(self, source: DataSource, out_dir: Path, charset: Charset, samples: int = 8,
                 width_multiple: int = 1):
        super().__init__()
        self.width_multiple = width_multiple
        self.out_dir = out_dir
        self.charset = charset
        self.chosen: list[tuple[np.ndarray, str]] = []
        for b in source.val_batches():
            self.chosen += [(b.images[i, :, : int(b.widths[i])].copy(), b.texts[i]) for i in range(len(b.texts))]
            if len(self.chosen) >= samples:
                break
        self.chosen = self.chosen[:samples]

    def on_epoch_end(self, epoch, logs=None):
        if not self.chosen:
            return
        preds = [predict_texts(self.model, img[None], np.array([img.shape[1]]), self.charset, self.width_multiple)[0][0]
                 for img, _ in self.chosen]
        cer = (logs or {}).get("val_cer")
        title = f"epoch {epoch + 1}" + (f"  val CER {cer:.2%}" if cer is not None else "")
        write_prediction_grid(self.out_dir / f"epoch_{epoch + 1:03d}.png", [c[0] for c in self.chosen],
                              [c[1] for c in self.chosen], preds, title)


class LastCheckpoint(keras.callbacks.Callback):
    """After each epoch: last.keras (weights and optimizer state) and state.json, for `resume`."""

    def __init__(self, run_dir: Path, validation: ValidationCER, config: TrainConfig, extra: dict[str, Any]):
        super().__init__()
        self.run_dir = run_dir
        self.validation = validation
        self.config = config
        self.extra = extra

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, self.run_dir / LAST_MODEL)
        v = self.validation
        state = {
            "epoch": epoch + 1,
            "best_val_cer": None if math.isinf(v.best) else v.best,
            "best_epoch": v.best_epoch,
            "learning_rate": float(np.asarray(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))),
            "config": self.config.to_dict(),
            **self.extra,
        }
        _write_json(self.run_dir / STATE, state)


class Progress(keras.callbacks.Callback):
    """Forwards Keras progress to a plain `callback(event)`; the CLI draws the bars."""

    def __init__(self, callback: ProgressCallback, steps: int, epochs: int):
        super().__init__()
        self.callback = callback
        self.steps = steps
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.callback({"event": "epoch_begin", "epoch": epoch + 1, "epochs": self.epochs, "steps": self.steps})

    def on_train_batch_end(self, batch, logs=None):
        self.callback({"event": "batch_end", "step": batch + 1, "steps": self.steps, "logs": dict(logs or {})})

    def on_epoch_end(self, epoch, logs=None):
        self.callback({"event": "epoch_end", "epoch": epoch + 1, "epochs": self.epochs, "logs": dict(logs or {})})


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the end of the epoch in which `seconds` have passed since `started`."""

    def __init__(self, seconds: float, started: float):
        super().__init__()
        self.seconds = seconds
        self.started = started
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.started >= self.seconds:
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1
            log.info("time limit of %.0f s reached after epoch %d", self.seconds, epoch + 1)


class Throughput(keras.callbacks.Callback):
    """Times the training steps (data wait included), not validation or checkpointing.

    `samples` counts lines: a whole epoch is `train_size` lines (its last batch may be short),
    a capped epoch `steps * batch_size`.
    """

    def __init__(self, train_size: int, steps_per_epoch: int | None, batch_size: int):
        super().__init__()
        self.train_size = train_size
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.seconds = 0.0
        self.steps = 0
        self.samples = 0
        self.epochs = 0
        self._t: float | None = None
        self._epoch_steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_steps = 0

    def on_epoch_end(self, epoch, logs=None):
        full = self.steps_per_epoch is None or self._epoch_steps * self.batch_size >= self.train_size
        self.samples += self.train_size if full else self._epoch_steps * self.batch_size
        self.epochs += 1

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._t is not None:
            self.seconds += time.perf_counter() - self._t
        self.steps += 1
        self._epoch_steps += 1


# --------------------------------------------------------------------------------------------
# Distribution


def distribution_strategy():
    """A `tf.distribute` strategy when several GPUs or a TF_CONFIG cluster are present, else None.

    Only with the TensorFlow backend; the model code stays backend-neutral.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return None


def worker_shard() -> tuple[int, int]:
    """(index, count) of this worker in a TF_CONFIG cluster; (0, 1) otherwise."""
    cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = cfg.get("cluster") or {}
    chiefs = len(cluster.get("chief", []))
    workers = len(cluster.get("worker", [])) + chiefs
    task = cfg.get("task") or {}
    index = int(task.get("index", 0)) + (chiefs if task.get("type") == "worker" else 0)
    return (index, workers) if workers > 1 else (0, 1)


# --------------------------------------------------------------------------------------------
# train()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_history(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _build(config: TrainConfig, alphabet: str, settings_dict: dict[str, Any], init_from: str | Path | None):
    """A fresh model, or one initialised from `init_from` (output layer mapped by character)."""
    from vhrmodel.presets import build_model

    if init_from is None:
        return build_model(config.preset or "small", alphabet=alphabet, preprocessing=settings_dict), None
    source = load_model(init_from)
    if source.preprocessing != settings_dict:
        log.warning("init model %s was trained with preprocessing %s, the store uses %s",
                    init_from, source.preprocessing, settings_dict)
    if config.preset:
        model = build_model(config.preset, alphabet=alphabet, preprocessing=settings_dict)
    else:
        arch = {k: v for k, v in source.get_config().items()
                if k not in ("name", "trainable", "num_classes", "height", "alphabet", "preprocessing")}
        model = build_model(arch, alphabet=alphabet, preprocessing=settings_dict)
    report = transfer_weights(source, model)
    if report["skipped_layers"]:
        log.warning("init from %s: layers not copied (shapes differ): %s", init_from, report["skipped_layers"])
    return model, report


def write_char_lm(texts: Iterable[str], path: Path, order: int = 5) -> Path:
    """Fit a `CharNgramLM` on `texts` (training labels only) and write it as JSON."""
    from vhrmodel.decoding import CharNgramLM

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(CharNgramLM(order=order).fit(texts).to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


def set_bn_momentum(model, momentum: float) -> int:
    """Set the moving-statistics momentum of every BatchNormalization layer; returns how many.

    Momentum only matters while training, and layer configs are rebuilt from the model config
    on load, so a saved model is unchanged by this.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1). Received: bn_momentum={momentum}")
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            count += 1
    return count


def _compile(model, config: TrainConfig) -> None:
    optimizer = keras.optimizers.Adam(learning_rate=config.lr, clipnorm=config.clipnorm)
    # Widths vary per batch: XLA would recompile for every new shape.
    model.compile(optimizer=optimizer, loss=FramesCTCLoss(), jit_compile=False)


def _tensorboard_available() -> bool:
    """Keras' TensorBoard callback writes through tf.summary, which needs the tensorboard package."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("tensorflow") is None:
        log.warning("TensorBoard logs are skipped: install tensorflow and tensorboard to get them")
        return False
    return True


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def train(
    store_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    records: str | Path | None = None,
    callback: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train a recogniser on a store; returns the `train.json` summary.

    Args:
        store_path: the LMDB store (`vhrdata build-lmdb` output).
        out_dir: the run folder; refused if it already holds a run, unless `resume`.
        config: what to train and how (`TrainConfig`).
        resume: continue the run in `out_dir` from `last.keras` (weights, optimizer state, epoch).
        init_from: a model file to fine-tune (e.g. pretrained on synthetic lines); its output
            layer is mapped by character onto the store's alphabet.
        records: records.parquet (or its folder) for the slow path, when the store index does
            not say where its records came from.
        callback: receives progress events, dicts with "event" = "epoch_begin" (epoch, epochs,
            steps), "batch_end" (step, steps, logs) or "epoch_end" (epoch, epochs, logs).

    Raises:
        TrainingError: the run folder, checkpoint or store cannot be used.
        StoreError: the store is missing, stale or corrupt.
        ModelFileError: the `init_from` or resume model cannot be used.
    """
    from vhrdata.store import open_store

    config = config or TrainConfig()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if resume and init_from is not None:
        raise TrainingError("--resume and --init-from exclude each other: resume continues a run, init-from starts one")
    if resume and not (out_dir / LAST_MODEL).exists():
        raise TrainingError(f"nothing to resume in {out_dir}: {LAST_MODEL} is missing; start a run without --resume")
    if not resume and (out_dir / LAST_MODEL).exists():
        raise TrainingError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")

    store = open_store(store_path)
    _check_splits(store, config)
    alphabet = store.alphabet
    charset = Charset(alphabet)
    settings_dict = settings_to_dict(store.settings)
    keras.utils.set_random_seed(config.seed)

    state: dict[str, Any] = {}
    if resume and (out_dir / STATE).exists():
        state = json.loads((out_dir / STATE).read_text(encoding="utf-8"))
    initial_epoch = int(state.get("epoch", 0))
    if resume and initial_epoch >= config.epochs:
        raise TrainingError(f"the run in {out_dir} already trained {initial_epoch} epochs; "
                            f"pass --epochs larger than {initial_epoch} to continue")

    strategy = distribution_strategy()
    shard_index, num_shards = worker_shard() if strategy is not None else (0, 1)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    # --batch-size is per replica; each worker reads its share of the global batch.
    data_config = dataclasses.replace(config, batch_size=config.batch_size * replicas // num_shards)

    transfer = None
    with strategy.scope() if strategy is not None else _NullScope():
        if resume:
            model = load_model(out_dir / LAST_MODEL, compile=True)
            if model.alphabet != alphabet:
                raise TrainingError(f"the run in {out_dir} was trained on another alphabet than store {store_path}; "
                                    "use --init-from to fine-tune on a different store")
            if config.bn_momentum is not None:
                set_bn_momentum(model, config.bn_momentum)
        else:
            model, transfer = _build(config, alphabet, settings_dict, init_from)
            if config.bn_momentum is not None:
                set_bn_momentum(model, config.bn_momentum)
            _compile(model, config)
    downsample = int(model.downsample)
    store_downsample = int((store.index.get("build") or {}).get("downsample", downsample))
    if store_downsample != downsample:
        log.warning("store %s checked CTC feasibility for downsample %d, the model downsamples by %d",
                    store_path, store_downsample, downsample)

    augmenter = None
    if config.augment:
        aug_cfg = config.augment_config or AugmentConfig()
        aug_cfg = dataclasses.replace(aug_cfg, downsample=downsample,
                                      max_width=aug_cfg.max_width or int(store.settings.max_width))
        augmenter = BatchAugmenter(aug_cfg, seed=config.seed)
    if config.fast:
        source = store_source(store, data_config, charset, augmenter, num_shards=num_shards,
                              shard_index=shard_index)
    else:
        source = records_source(store, data_config, charset, augmenter, records=records,
                                epoch=initial_epoch)
    steps = source.steps
    if keras.backend.backend() == "tensorflow":
        train_data = tf_input(source.epoch_batches, steps, store.settings.height, downsample, initial_epoch)
        width_multiple = 1
    else:
        width_multiple = 64
        train_data = generator_input(source.epoch_batches, downsample, initial_epoch, width_multiple)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_char_lm((sample.text for sample in store.split(config.train_split)), out_dir / CHAR_LM)
    if config.steps_per_epoch is not None:
        steps = min(config.steps_per_epoch, steps)
    validation = ValidationCER(source, out_dir / BEST_MODEL, charset, best=state.get("best_val_cer"),
                               best_epoch=state.get("best_epoch"), width_multiple=width_multiple)
    throughput = Throughput(source.train_size, config.steps_per_epoch, data_config.batch_size)
    callbacks = [
        throughput,
        validation,  # before every callback that reads val_cer from the logs
        # The learning rate follows val loss, not val CER: CER sits at 100 % through the first
        # epochs of CTC training (all blanks) while the loss already falls, and a CER plateau
        # there would halve the rate before learning starts.
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5,
                                          patience=config.reduce_lr_patience, min_lr=config.min_lr),
    ]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_cer", mode="min", patience=config.early_stopping))
    callbacks.append(keras.callbacks.CSVLogger(str(out_dir / HISTORY), append=resume))
    if config.tensorboard and _tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False,
                                                     profile_batch=0))
    if config.grid_samples:
        callbacks.append(PredictionGrid(source, out_dir / "samples", charset, config.grid_samples, width_multiple))
    callbacks.append(LastCheckpoint(out_dir, validation, config, {"store": str(store_path)}))
    time_limit = TimeLimit(config.time_limit, started) if config.time_limit else None
    if time_limit is not None:
        callbacks.append(time_limit)
    if callback is not None:
        callbacks.append(Progress(callback, steps, config.epochs))

    log.info("training %s (%d params) on %d lines, validating on %d, %s input",
             model.name, model.count_params(), source.train_size, source.val_size, source.description["input"])
    model.fit(train_data, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=config.steps_per_epoch or (
              None if keras.backend.backend() == "tensorflow" else steps),
              callbacks=callbacks, verbose=0, shuffle=False)  # the inputs shuffle themselves, per seed

    if not (out_dir / BEST_MODEL).exists():
        # val CER never beat the resumed best (or was NaN): still leave a usable model.
        save_model(model, out_dir / BEST_MODEL, include_optimizer=False)
    summary = {
        "store": str(store_path),
        "run_dir": str(out_dir),
        "preset": config.preset or ("small" if init_from is None else "from init model"),
        "params": int(model.count_params()),
        "model_bytes": (out_dir / BEST_MODEL).stat().st_size,
        "epochs_run": len(_read_history(out_dir / HISTORY)),
        "epochs_this_call": throughput.epochs,
        "best_val_cer": None if math.isinf(validation.best) else validation.best,
        "best_epoch": validation.best_epoch,
        "train_lines": source.train_size,
        "val_lines": source.val_size,
        "train_steps": throughput.steps,
        "train_samples": throughput.samples,
        "train_step_seconds": round(throughput.seconds, 3),
        "train_samples_per_s": round(throughput.samples / throughput.seconds, 2) if throughput.seconds else None,
        "validation_seconds": round(validation.seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "backend": keras.backend.backend(),
        "replicas": replicas,
        "workers_in_cluster": num_shards,
        "resumed_from_epoch": initial_epoch if resume else None,
        "stopped_by_time_limit": time_limit is not None and time_limit.stopped_epoch is not None,
        "init_from": str(init_from) if init_from else None,
        "transfer": transfer,
        "config": config.to_dict(),
        **source.description,
    }
    _write_json(out_dir / SUMMARY, summary)
    return summary
