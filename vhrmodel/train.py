"""Training from a store: `train()` behind `vhrmodel train`.

Two input paths feed the same loop:

- fast: batches stream from the LMDB store through its reader (`store.split(...).keras_dataset`),
  already preprocessed; augmentation runs as the reader's per-batch `transform` in its workers.
- slow (`fast=False`): the store's `records.parquet` is read and every image is decoded and
  preprocessed every epoch with `vhrdata.preprocess.preprocess_image`, the function the store
  was built with. It exists for parity checks and to measure what the store saves.

The best checkpoint is chosen by validation CER, not by loss: CTC loss keeps falling on
confidently wrong lines long after the text stops improving.

A run folder holds `model.keras` (best by val CER), `last.keras` (with optimizer state),
`history.csv`, `train.json`, `state.json` (what `resume` needs), `samples/` (a PNG grid of
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
        reduce_lr_patience: epochs without improvement before the learning rate is halved.
        min_lr: lower bound of the learning rate.
        clipnorm: gradient norm clipping (LSTMs under CTC occasionally spike).
        grid_samples: validation lines drawn in the per-epoch PNG grid (0 = no grid).
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
    workers: int = 2
    seed: int = 0
    steps_per_epoch: int | None = None
    val_limit: int | None = None
    early_stopping: int = 10
    reduce_lr_patience: int = 4
    min_lr: float = 1e-5
    clipnorm: float | None = 5.0
    grid_samples: int = 8
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


def _keras():
    import keras

    return keras


def records_dataset(
    frame,
    settings,
    charset: Charset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    transform: Callable | None = None,
    workers: int = 0,
):
    """The slow input path: a `keras.utils.PyDataset` that decodes and preprocesses every image.

    Batches are (x uint8 [B, H, W, 1], y int32 [B, L]) like the store reader's. The class is
    made here, not at import, so that this module imports without loading Keras.

    Args:
        frame: records rows (columns id, path, text, width, height).
        settings: the store's `PreprocessSettings`.
        charset: encodes the labels.
        batch_size: lines per batch.
        shuffle: bucket-shuffle every epoch (training) or keep the order (validation).
        seed: shuffling seed.
        transform: per-batch callable applied to a `LineBatch` (augmentation).
        workers: threads that build batches (image decoding releases the GIL).
    """
    keras = _keras()
    from vhrdata.preprocess import preprocess_image

    class RecordsPyDataset(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=max(1, workers), use_multiprocessing=False)
            self.paths = list(frame["path"])
            self.texts = list(frame["text"])
            self.ids = list(frame["id"])
            # Width after resizing to the store height, for bucketing without decoding.
            h = np.maximum(np.asarray(frame["height"], np.float64), 1)
            self.est_widths = np.minimum(np.asarray(frame["width"]) * settings.height / h, settings.max_width)
            self.epoch = 0
            self._order()

        def _order(self):
            if shuffle:
                rng = np.random.default_rng([seed, self.epoch])
                self.batches = bucket_order(self.est_widths, batch_size, rng)
            else:
                idx = np.arange(len(self.paths))
                self.batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]

        def __len__(self):
            return len(self.batches)

        def line_batch(self, i: int) -> LineBatch:
            idx = self.batches[i]
            images = [preprocess_image(self.paths[j], settings) for j in idx]
            batch = make_batch(images, [self.texts[j] for j in idx], [self.ids[j] for j in idx], charset)
            batch.epoch = self.epoch
            return batch

        def __getitem__(self, i):
            batch = self.line_batch(i)
            if transform is not None:
                batch = transform(batch)
            return batch.images[..., None], batch.labels

        def on_epoch_end(self):
            self.epoch += 1
            if hasattr(transform, "set_epoch"):
                transform.set_epoch(self.epoch)
            self._order()

    return RecordsPyDataset()


# --------------------------------------------------------------------------------------------
# Sources: the store (fast) or its records (slow)


@dataclass
class DataSource:
    """Training and validation input of one run, whichever path produces it."""

    train: Any  # keras-consumable dataset yielding (x, y)
    val_batches: Callable[[], Iterator[LineBatch]]  # un-augmented validation batches
    train_size: int
    val_size: int
    charset: Charset
    settings: Any
    description: dict[str, Any] = field(default_factory=dict)


def _store_alphabet(store) -> str:
    alphabet = store.alphabet
    return alphabet.chars if isinstance(alphabet, Charset) else "".join(alphabet)


def _check_splits(store, config: TrainConfig) -> None:
    splits = dict(store.splits)
    for name in (config.train_split, config.val_split):
        if not splits.get(name):
            raise TrainingError(
                f"store {store.path if hasattr(store, 'path') else ''} has no {name!r} lines "
                f"(splits: {splits}); re-run `vhrdata split` with a non-zero ratio for {name!r}, "
                "then `vhrdata build-lmdb`"
            )


def _val_from_store(split, batch_size: int, limit: int | None) -> Callable[[], Iterator[LineBatch]]:
    def gen() -> Iterator[LineBatch]:
        seen = 0
        for b in split.batches(batch_size=batch_size, shuffle=False):
            n = len(b.texts) if limit is None else min(len(b.texts), limit - seen)
            yield LineBatch(b.images[:n], np.asarray(b.widths)[:n], np.asarray(b.labels)[:n],
                            np.asarray(b.label_lengths)[:n], list(b.texts[:n]), list(b.ids[:n]))
            seen += n
            if limit is not None and seen >= limit:
                return

    return gen


def store_source(store, config: TrainConfig, charset: Charset, augmenter: Callable | None, num_shards: int = 1,
                 shard_index: int = 0, tf_data: bool = False) -> DataSource:
    """Fast path: stream preprocessed batches from the LMDB store."""
    _check_splits(store, config)
    train_split = store.split(config.train_split)
    val_split = store.split(config.val_split)
    kwargs = dict(batch_size=config.batch_size, shuffle=True, seed=config.seed, charset=charset,
                  transform=augmenter, workers=config.workers)
    if num_shards > 1:
        kwargs.update(shard_index=shard_index, num_shards=num_shards)
    train = train_split.tf_dataset(**kwargs) if tf_data else train_split.keras_dataset(**kwargs)
    return DataSource(
        train=train,
        val_batches=_val_from_store(val_split, config.batch_size, config.val_limit),
        train_size=len(train_split),
        val_size=len(val_split) if config.val_limit is None else min(len(val_split), config.val_limit),
        charset=charset,
        settings=store.settings,
        description={"input": "lmdb"},
    )


def records_location(store, records: str | Path | None) -> Path:
    """Where the store's records.parquet is: `records` if given, else what the store index recorded."""
    from vhrdata.records import records_path

    if records is not None:
        path = records_path(records)
    else:
        index = getattr(store, "index", {}) or {}
        found = index.get("records") or index.get("records_path") or (index.get("source") or {}).get("records")
        if isinstance(found, dict):
            found = found.get("path")
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
                   records: str | Path | None = None) -> DataSource:
    """Slow path: decode and preprocess the store's lines from their image files every epoch.

    The lines are those of the store's splits (matched by id), so both paths train on the same
    data; the preprocessing settings are the store's.
    """
    from vhrdata.records import read_records

    _check_splits(store, config)
    path = records_location(store, records)
    df = read_records(path, require_split=True)
    frames = {}
    for name in (config.train_split, config.val_split):
        split = store.split(name)
        ids = split.ids if hasattr(split, "ids") else [s.id for s in split]
        rows = df.set_index("id").reindex(list(ids))
        missing = rows.index[rows["path"].isna()].tolist()
        if missing:
            raise TrainingError(f"{len(missing)} {name} lines of the store are not in {path} (e.g. {missing[0]!r}); "
                                "pass the records the store was built from with --records")
        frames[name] = rows.reset_index()
    train = records_dataset(frames[config.train_split], store.settings, charset, config.batch_size, shuffle=True,
                            seed=config.seed, transform=augmenter, workers=config.workers)
    val_frame = frames[config.val_split]
    if config.val_limit is not None:
        val_frame = val_frame.iloc[: config.val_limit]
    val = records_dataset(val_frame, store.settings, charset, config.batch_size, shuffle=False)

    def val_batches() -> Iterator[LineBatch]:
        for i in range(len(val)):
            yield val.line_batch(i)

    return DataSource(train=train, val_batches=val_batches, train_size=len(frames[config.train_split]),
                      val_size=len(val_frame), charset=charset, settings=store.settings,
                      description={"input": "records", "records": str(path)})


# --------------------------------------------------------------------------------------------
# Callbacks


def predict_texts(model, images: np.ndarray, charset: Charset) -> tuple[list[str], np.ndarray]:
    """Greedy-decoded texts and logits of a uint8 [B, H, W] batch."""
    from vhrmodel.decoding import ctc_greedy_decode

    logits = np.asarray(model.predict_on_batch(images[..., None]))
    return ctc_greedy_decode(logits, charset), logits


def _callback_base():
    return _keras().callbacks.Callback


def make_validation_cer(source: DataSource, best_path: Path, charset: Charset, best: float | None = None):
    """Callback: after each epoch, val CER (and CTC val loss) into the logs; saves the best model."""
    keras = _keras()

    class ValidationCER(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = math.inf if best is None else best
            self.best_epoch = None
            self.seconds = 0.0

        def on_epoch_end(self, epoch, logs=None):
            from vhrmodel.losses import ctc_loss
            from vhrmodel.metrics import evaluate_texts

            t0 = time.perf_counter()
            refs, hyps, losses = [], [], []
            for b in source.val_batches():
                texts, logits = predict_texts(self.model, b.images, charset)
                refs += b.texts
                hyps += texts
                frames = np.full(len(texts), logits.shape[1], np.int32)
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
                save_model(self.model, best_path)
                log.info("epoch %d: val CER improved to %.4f, saved %s", epoch + 1, cer, best_path)
            self.seconds += time.perf_counter() - t0

    return ValidationCER()


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


def make_prediction_grid(source: DataSource, out_dir: Path, charset: Charset, samples: int):
    """Callback: each epoch, a PNG grid of the first validation lines with prediction and truth."""
    keras = _keras()
    chosen: list[tuple[np.ndarray, str]] = []
    for b in source.val_batches():
        for i in range(len(b.texts)):
            chosen.append((b.images[i, :, : int(b.widths[i])], b.texts[i]))
        if len(chosen) >= samples:
            break
    chosen = chosen[:samples]

    class PredictionGrid(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if not chosen:
                return
            preds = [predict_texts(self.model, img[None], charset)[0][0] for img, _ in chosen]
            cer = (logs or {}).get("val_cer")
            title = f"epoch {epoch + 1}" + (f"  val CER {cer:.2%}" if cer is not None else "")
            write_prediction_grid(out_dir / f"epoch_{epoch + 1:03d}.png", [c[0] for c in chosen],
                                  [c[1] for c in chosen], preds, title)

    return PredictionGrid()


def make_last_checkpoint(run_dir: Path, validation, config: TrainConfig, extra: dict[str, Any]):
    """Callback: after each epoch, last.keras (with optimizer state) and state.json for `resume`."""
    keras = _keras()

    class LastCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            save_model(self.model, run_dir / LAST_MODEL)
            state = {
                "epoch": epoch + 1,
                "best_val_cer": None if math.isinf(validation.best) else validation.best,
                "best_epoch": validation.best_epoch,
                "learning_rate": float(np.asarray(self.model.optimizer.learning_rate)),
                "config": config.to_dict(),
                **extra,
            }
            _write_json(run_dir / STATE, state)

    return LastCheckpoint()


def make_progress(callback: ProgressCallback, steps: int, epochs: int):
    """Callback that forwards Keras progress to a plain `callback(event)` (the CLI draws bars)."""
    keras = _keras()

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            callback({"event": "epoch_begin", "epoch": epoch + 1, "epochs": epochs, "steps": steps})

        def on_train_batch_end(self, batch, logs=None):
            callback({"event": "batch_end", "step": batch + 1, "steps": steps, "logs": dict(logs or {})})

        def on_epoch_end(self, epoch, logs=None):
            callback({"event": "epoch_end", "epoch": epoch + 1, "epochs": epochs, "logs": dict(logs or {})})

    return Progress()


def make_throughput(train_size: int, steps_per_epoch: int | None, batch_size: int):
    """Callback that times the training steps only (not validation, not checkpointing).

    `samples` counts lines: a whole epoch is `train_size` lines (its last batch may be short),
    a capped epoch is `steps * batch_size`.
    """
    keras = _keras()

    class Throughput(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = 0.0
            self.steps = 0
            self.samples = 0
            self.epochs = 0
            self._t = None
            self._epoch_steps = 0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_steps = 0

        def on_epoch_end(self, epoch, logs=None):
            full = steps_per_epoch is None or self._epoch_steps * batch_size >= train_size
            self.samples += train_size if full else self._epoch_steps * batch_size
            self.epochs += 1

        def on_train_batch_begin(self, batch, logs=None):
            self._t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self._t is not None:
                self.seconds += time.perf_counter() - self._t
            self.steps += 1
            self._epoch_steps += 1

    return Throughput()


# --------------------------------------------------------------------------------------------
# Distribution


def distribution_strategy():
    """A `tf.distribute` strategy when several GPUs or a TF_CONFIG cluster are present, else None.

    Only with the TensorFlow backend; model code stays backend-neutral.
    """
    keras = _keras()
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return None


def _worker_shard() -> tuple[int, int]:
    """(index, count) of this worker in a TF_CONFIG cluster; (0, 1) otherwise."""
    cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = cfg.get("cluster") or {}
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    task = cfg.get("task") or {}
    index = int(task.get("index", 0)) + (len(cluster.get("chief", [])) if task.get("type") == "worker" else 0)
    return (index, workers) if workers > 1 else (0, 1)


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


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


def _compile(model, config: TrainConfig):
    keras = _keras()
    from vhrmodel.losses import CTCLoss

    optimizer = keras.optimizers.Adam(learning_rate=config.lr, clipnorm=config.clipnorm)
    # Widths vary per batch: XLA would recompile for every new shape.
    model.compile(optimizer=optimizer, loss=CTCLoss(), jit_compile=False)


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
        callback: receives progress events (dicts with "event": epoch_begin, batch_end, epoch_end).

    Raises:
        TrainingError: the run folder, checkpoint or store cannot be used.
        StoreError: the store is missing, stale or corrupt.
    """
    from vhrdata.store import open_store

    config = config or TrainConfig()
    keras = _keras()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if resume and init_from is not None:
        raise TrainingError("--resume and --init-from exclude each other: resume continues a run, init-from starts one")
    if resume and not (out_dir / LAST_MODEL).exists():
        raise TrainingError(f"nothing to resume in {out_dir}: {LAST_MODEL} is missing; start a run without --resume")
    if not resume and (out_dir / LAST_MODEL).exists():
        raise TrainingError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)

    store = open_store(store_path)
    alphabet = _store_alphabet(store)
    charset = Charset(alphabet)
    settings_dict = settings_to_dict(store.settings)
    keras.utils.set_random_seed(config.seed)

    strategy = distribution_strategy()
    shard_index, num_shards = _worker_shard() if strategy is not None else (0, 1)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    global_config = dataclasses.replace(config, batch_size=config.batch_size * replicas // num_shards) \
        if replicas > 1 else config

    augmenter = None
    if config.augment:
        aug_cfg = config.augment_config or AugmentConfig()
        if aug_cfg.max_width is None:
            aug_cfg = dataclasses.replace(aug_cfg, max_width=int(store.settings.max_width))
        augmenter = BatchAugmenter(aug_cfg, seed=config.seed)
    if config.fast:
        source = store_source(store, global_config, charset, augmenter, num_shards=num_shards,
                              shard_index=shard_index, tf_data=num_shards > 1)
    else:
        source = records_source(store, global_config, charset, augmenter, records=records)

    state: dict[str, Any] = {}
    transfer = None
    with strategy.scope() if strategy is not None else _NullScope():
        if resume:
            state = json.loads((out_dir / STATE).read_text()) if (out_dir / STATE).exists() else {}
            model = load_model(out_dir / LAST_MODEL, compile=True)
            if model.alphabet != alphabet:
                raise TrainingError(f"the run in {out_dir} was trained on another alphabet than store {store_path}; "
                                    "use --init-from to fine-tune on a different store")
        else:
            model, transfer = _build(config, alphabet, settings_dict, init_from)
            _compile(model, config)
    initial_epoch = int(state.get("epoch", 0))
    if resume and initial_epoch >= config.epochs:
        raise TrainingError(f"the run in {out_dir} already trained {initial_epoch} epochs; "
                            f"pass --epochs larger than {initial_epoch} to continue")

    steps = len(source.train) if hasattr(source.train, "__len__") else None
    if config.steps_per_epoch is not None:
        steps = min(config.steps_per_epoch, steps) if steps else config.steps_per_epoch

    validation = make_validation_cer(source, out_dir / BEST_MODEL, charset, best=state.get("best_val_cer"))
    validation.best_epoch = state.get("best_epoch")
    throughput = make_throughput(source.train_size, config.steps_per_epoch, global_config.batch_size * num_shards)
    callbacks = [
        throughput,
        validation,  # first after timing: the callbacks below read val_cer from the logs
        keras.callbacks.ReduceLROnPlateau(monitor="val_cer", mode="min", factor=0.5,
                                          patience=config.reduce_lr_patience, min_lr=config.min_lr),
    ]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_cer", mode="min", patience=config.early_stopping))
    callbacks.append(keras.callbacks.CSVLogger(str(out_dir / HISTORY), append=resume))
    if config.tensorboard and keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False,
                                                     profile_batch=0))
    if config.grid_samples:
        callbacks.append(make_prediction_grid(source, out_dir / "samples", charset, config.grid_samples))
    callbacks.append(make_last_checkpoint(out_dir, validation, config, {"store": str(store_path)}))
    if callback is not None:
        callbacks.append(make_progress(callback, steps or 0, config.epochs))

    log.info("training %s (%d params) on %d lines, validating on %d, %s input",
             model.name, model.count_params(), source.train_size, source.val_size, source.description["input"])
    model.fit(source.train, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=config.steps_per_epoch,
              callbacks=callbacks, verbose=0)

    history = _read_history(out_dir / HISTORY)
    epochs_run = len(history)
    if not (out_dir / BEST_MODEL).exists():
        # val CER never improved on a resumed best (or was NaN): keep a usable model anyway.
        save_model(model, out_dir / BEST_MODEL)
    summary = {
        "store": str(store_path),
        "run_dir": str(out_dir),
        "preset": config.preset or ("small" if init_from is None else "from init model"),
        "params": int(model.count_params()),
        "model_bytes": (out_dir / BEST_MODEL).stat().st_size,
        "epochs_run": epochs_run,
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
        "init_from": str(init_from) if init_from else None,
        "transfer": transfer,
        "config": config.to_dict(),
        **source.description,
    }
    _write_json(out_dir / SUMMARY, summary)
    return summary
