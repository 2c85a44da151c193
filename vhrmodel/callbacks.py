"""The callbacks of a training run: validation with the best checkpoint, the last checkpoint
with everything `--resume` needs, the sample grid, progress, a time limit and throughput.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np

from vhrdata.charset import Charset
from vhrdata.errors import write_failure
from vhrdata.store.disk_format import write_json_atomic
from vhrmodel.artifact import save_model
from vhrmodel.config import LAST_MODEL, TrainConfig, resume_hint
from vhrmodel.errors import TrainingError
from vhrmodel.inputs import DataSource
from vhrmodel.runtime import KerasRuntime, frame_lengths

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], None]


def write_run_json(path: Path, obj: dict[str, Any]) -> Path:
    """A run's JSON file (state.json, train.json, evaluation reports): indent 2, NaN as null, atomic."""
    return write_json_atomic(path, obj, indent=2, sort_keys=False, finite=True, default=str)


def run_write_error(ex: OSError, run_dir: Path, name: str) -> TrainingError:
    """A write into the run folder failed (a full disk): one message that says what is kept and how to go on."""
    kept = f"the previous {name} is unchanged" if (run_dir / name).exists() else f"no {name} was written"
    return TrainingError(write_failure(ex, run_dir, kept, name) + resume_hint(run_dir))


def greedy_texts(runtime: KerasRuntime, images: np.ndarray, widths: np.ndarray, charset: Charset
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Greedy texts, logits and own frame counts of a padded uint8 [B, H, W] batch."""
    from vhrmodel.decoding import ctc_greedy_decode

    logits = runtime.logits(images, widths)
    lengths = frame_lengths(widths, runtime.downsample, logits.shape[1])
    return ctc_greedy_decode(logits, charset, logit_lengths=lengths), logits, lengths


class ValidateAndKeepBest(keras.callbacks.Callback):
    """After each epoch: val CER, WER, SER and CTC loss into the logs; saves the best model by CER.

    Runs before the callbacks that read its logs (ReduceLROnPlateau, EarlyStopping, CSVLogger).
    The best model is chosen by CER, not loss: CTC loss keeps falling on confidently wrong lines
    long after the text stops improving.

    Args:
        source: where the validation batches come from.
        best_path: where the best model is saved.
        charset: decodes the output.
        best: the best CER so far (when resuming).
        best_epoch: its epoch (1-based).
        width_multiple: see `KerasRuntime`.
    """

    def __init__(self, source: DataSource, best_path: Path, charset: Charset, best: float | None = None,
                 best_epoch: int | None = None, width_multiple: int | None = None, callback: ProgressCallback | None = None):
        super().__init__()
        self.source = source
        self.width_multiple = width_multiple
        self.best_path = best_path
        self.charset = charset
        self.best = math.inf if best is None else float(best)
        self.best_epoch = best_epoch
        self.seconds = 0.0
        self.callback = callback

    def measure(self, model, progress: bool = True) -> tuple[dict[str, Any], float]:
        """Greedy text metrics (`evaluate_texts`) and mean CTC loss of `model` on the val split."""
        from vhrmodel.losses import ctc_loss
        from vhrmodel.metrics import evaluate_texts

        runtime = KerasRuntime(model, self.width_multiple)
        refs, hyps, losses = [], [], []
        done = 0
        for b in self.source.val_batches():
            texts, logits, lengths = greedy_texts(runtime, b.images, b.widths, self.charset)
            refs += b.texts
            hyps += texts
            losses.append(np.asarray(ctc_loss(b.labels, logits, b.label_lengths, lengths)))
            done += len(b)
            if progress and self.callback is not None:
                self.callback({"event": "val_progress", "done": done, "total": self.source.val_size})
        loss = float(np.mean(np.concatenate(losses))) if losses else float("nan")
        return evaluate_texts(refs, hyps), loss

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        metrics, loss = self.measure(self.model)
        cer = float(metrics["cer"])
        if logs is not None:
            logs["val_loss"] = loss
            logs["val_cer"] = cer
            logs["val_wer"] = float(metrics["wer"])
            logs["val_ser"] = float(metrics["ser"])
        if cer < self.best:
            self.best, self.best_epoch = cer, epoch + 1
            save_model(self.model, self.best_path, include_optimizer=False)
            log.info("epoch %d: val CER improved to %.4f, saved %s", epoch + 1, cer, self.best_path)
        self.seconds += time.perf_counter() - t0


class RawWeightsCER(keras.callbacks.Callback):
    """With weight averaging (`TrainConfig.ema_momentum`): the val CER of the raw, un-averaged
    weights, logged as `val_cer_raw` beside `val_cer` (the averaged weights', which choose the best
    model), so every run measures what the averaging gives. Runs before `SwapEMAWeights` swaps the
    averages in at the epoch's end.
    """

    def __init__(self, validation: ValidateAndKeepBest):
        super().__init__()
        self.validation = validation

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        metrics, _ = self.validation.measure(self.model, progress=False)
        if logs is not None:
            logs["val_cer_raw"] = float(metrics["cer"])
        self.validation.seconds += time.perf_counter() - t0


def swap_averaged_weights(model) -> bool:
    """Swap a weight-averaging model's trainable weights with its optimizer's averages, in place;
    returns False (and does nothing) when the optimizer keeps no averages.

    With averaging on, `SwapEMAWeights` puts the averages in the model at each epoch's end, so
    last.keras holds them as its weights and the raw weights in the optimizer's slots (a finished
    run's last epoch copies the averages into both). A resumed run calls this once after loading,
    so that training goes on from the raw weights and the averages go on averaging.
    """
    optimizer = getattr(model, "optimizer", None)
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if not getattr(optimizer, "use_ema", False) or not averages:
        return False
    for var, average in zip(optimizer._trainable_variables, averages):
        raw = np.array(keras.ops.convert_to_numpy(average))
        average.assign(keras.ops.convert_to_numpy(var))
        var.assign(raw)
    return True


class _ResumableCounters:
    """Keeps a Keras schedule callback's counters across `--resume` (`state()`, `initial_state`).

    Keras resets them when training begins, so a resumed run would otherwise wait a full
    patience again. `COUNTERS` names the int attributes; `best` is kept as a float.
    """

    COUNTERS: tuple[str, ...] = ("wait",)

    def __init__(self, *args, initial_state: dict[str, Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial_state = initial_state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        saved = self.initial_state or {}
        for name in self.COUNTERS:
            if name in saved:
                setattr(self, name, int(saved[name]))
        if saved.get("best") is not None:
            self.best = float(saved["best"])

    def state(self) -> dict[str, Any]:
        best = None if self.best is None or not math.isfinite(float(self.best)) else float(self.best)
        return {**{name: int(getattr(self, name)) for name in self.COUNTERS}, "best": best}


class ResumableReduceLROnPlateau(_ResumableCounters, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose `wait`, `cooldown_counter` and `best` survive `--resume`."""

    COUNTERS = ("wait", "cooldown_counter")


def cosine_lr(epoch: int, epochs: int, lr: float, min_lr: float) -> float:
    """The learning rate of 0-based `epoch` of `epochs` on a half cosine from `lr` down to `min_lr`.

    Epoch 0 trains at `lr`; the last epoch at a rate just above `min_lr`; epochs past the end
    (a run resumed with the same --epochs cannot reach them) stay at `min_lr`.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be positive. Received: epochs={epochs}")
    progress = min(max(epoch, 0), epochs) / epochs
    return float(min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)))


class CosineSchedule(keras.callbacks.LearningRateScheduler):
    """`TrainConfig.lr_schedule == "cosine"`: sets `cosine_lr` at the start of every epoch.

    The rate follows from the epoch number alone, so a resumed run needs no saved counters.
    """

    def __init__(self, epochs: int, lr: float, min_lr: float):
        super().__init__(lambda epoch, _current: cosine_lr(epoch, epochs, lr, min_lr))

    def state(self) -> dict[str, Any]:
        return {}


class ResumableEarlyStopping(_ResumableCounters, keras.callbacks.EarlyStopping):
    """EarlyStopping whose `wait`, `best_epoch` and `best` survive `--resume`."""

    COUNTERS = ("wait", "best_epoch")


def write_prediction_grid(path: Path, images: Sequence[np.ndarray], truths: Sequence[str], preds: Sequence[str],
                          title: str = "") -> Path:
    """A PNG with one row per line: the image, the truth (black) and the prediction below it.

    The prediction is green when right; when wrong it is dark red on a pale yellow box, and
    every character that differs from the truth (per `vhrmodel.metrics.align`) is in [brackets].
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vhrmodel.metrics import align

    n = len(images)
    fig, axes = plt.subplots(n, 1, figsize=(12, 1.6 * n + 0.4), squeeze=False)
    for ax, img, truth, pred in zip(axes[:, 0], images, truths, preds):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"truth: {truth}", fontsize=9, loc="left", color="black", pad=16)
        ok = pred == truth
        marked = "".join(h if op == "equal" else f"[{h}]" for op, _, h in align(truth, pred) if op != "delete")
        ax.text(0.0, 1.02, ("pred:  " + pred) if ok else ("pred:  " + marked), transform=ax.transAxes, fontsize=9,
                color="#1a7f37" if ok else "#b00020",
                bbox=None if ok else {"facecolor": "#fff3b0", "edgecolor": "none", "pad": 1})
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except BaseException:
        plt.close(fig)
        raise
    return _save_figure(fig, path)


def _save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG through a temporary file (removed on failure), then close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(".tmp-" + path.name)
    try:
        fig.savefig(tmp, dpi=80, format="png")
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


class PredictionGrid(keras.callbacks.Callback):
    """Each epoch, a PNG grid of the first validation lines with truth and prediction.

    Args:
        source: where the validation lines come from (the first `samples` are drawn).
        out_dir: where `epoch_NNN.png` files go (1-based epoch numbers).
        charset: decodes the output.
        samples: how many lines.
        width_multiple: see `KerasRuntime`.
    """

    def __init__(self, source: DataSource, out_dir: Path, charset: Charset, samples: int = 8,
                 width_multiple: int | None = None):
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
        self.last_path: Path | None = None

    def on_epoch_end(self, epoch, logs=None):
        if not self.chosen:
            return
        from vhrdata.batching import pad_images

        runtime = KerasRuntime(self.model, self.width_multiple)
        images, widths = pad_images([c[0] for c in self.chosen])
        preds, _, _ = greedy_texts(runtime, images, widths, self.charset)
        cer = (logs or {}).get("val_cer")
        title = f"epoch {epoch + 1}" + (f"  val CER {cer:.2%}" if cer is not None else "")
        path = self.out_dir / f"epoch_{epoch + 1:03d}.png"
        try:
            self.last_path = write_prediction_grid(path, [c[0] for c in self.chosen], [c[1] for c in self.chosen],
                                                   preds, title)
        except OSError as ex:  # a picture to look at: a full disk must not stop training for it
            log.warning("%s; training continues without it", write_failure(
                ex, self.out_dir, "no sample grid was written for this epoch", path.name, elsewhere="",
                then="for the later epochs' grids"))


def _is_write_error(ex: BaseException) -> bool:
    """An OSError, or TensorFlow's error for a failed file write (tf.summary raises those)."""
    if isinstance(ex, OSError):
        return True
    try:
        from tensorflow.errors import OpError
    except ImportError:
        return False
    return isinstance(ex, OpError)


class TensorBoardLogs(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, whose failed writes (a full disk) stop the logs but not training.

    TensorBoard logs are for watching a run, so a write that fails logs one warning, the event
    files written so far stay, and the callback writes nothing more in this run.
    """

    failed = False

    def _guard(self, hook: str, *args, **kwargs) -> None:
        if self.failed:
            return
        try:
            getattr(super(), hook)(*args, **kwargs)
        except Exception as ex:  # noqa: BLE001 - filtered by _is_write_error, others go on
            if not _is_write_error(ex):
                raise
            self.failed = True
            log.warning("%s; training continues without TensorBoard logs", write_failure(
                ex, self.log_dir, "the event files written so far are kept", elsewhere="",
                then="then `vhrmodel train --resume` logs the later epochs"))

    def on_train_begin(self, logs=None):
        self._guard("on_train_begin", logs)

    def on_train_end(self, logs=None):
        if not self.failed:
            self._guard("on_train_end", logs)
        if self.failed:  # leave no summary writer set as the default, and close the files
            for step in [self._pop_writer] * len(getattr(self, "_prev_summary_state", ())) + [self._close_writers]:
                try:
                    step()
                except Exception as ex:  # noqa: BLE001 - the disk that failed may fail these too
                    if not _is_write_error(ex):
                        raise

    def on_test_begin(self, logs=None):
        self._guard("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._guard("on_test_end", logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._guard("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._guard("on_train_batch_end", batch, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._guard("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._guard("on_epoch_end", epoch, logs)


class LastCheckpoint(keras.callbacks.Callback):
    """After each epoch: last.keras (weights and optimizer state) and state.json, for `resume`.

    state.json holds the epoch, the best val CER and the counters of the LR schedule and of
    early stopping, so a resumed run continues exactly where the interrupted one stopped.
    """

    def __init__(self, run_dir: Path, last_name: str, state_name: str, validation: ValidateAndKeepBest,
                 config: TrainConfig, extra: dict[str, Any], schedule: Sequence[Any] = ()):
        super().__init__()
        self.run_dir = run_dir
        self.last_name = last_name
        self.state_name = state_name
        self.validation = validation
        self.config = config
        self.extra = extra
        self.schedule = schedule

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, self.run_dir / self.last_name)
        v = self.validation
        state = {
            "epoch": epoch + 1,
            "best_val_cer": None if math.isinf(v.best) else v.best,
            "best_epoch": v.best_epoch,
            "learning_rate": float(np.asarray(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))),
            "callbacks": {type(cb).__name__: cb.state() for cb in self.schedule},
            "config": self.config.to_dict(),
            **self.extra,
        }
        try:
            write_run_json(self.run_dir / self.state_name, state)
        except OSError as ex:
            raise run_write_error(ex, self.run_dir, self.state_name) from None


class HistoryLog(keras.callbacks.Callback):
    """history.csv (one row per epoch, numbered from 1) and history.png, rewritten each epoch.

    A resumed run keeps the rows of the epochs before it. The plot shows training and val
    loss, and val CER and WER, against the epoch.
    """

    def __init__(self, csv_path: Path, plot_path: Path | None = None):
        super().__init__()
        self.csv_path = csv_path
        self.plot_path = plot_path
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, logs=None):
        import csv

        self.rows = []
        if self.csv_path.exists():
            with self.csv_path.open(newline="") as f:
                self.rows = list(csv.DictReader(f))

    def on_epoch_end(self, epoch, logs=None):
        import csv

        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            row[key] = float(np.asarray(value))
        if self.model is not None and getattr(self.model, "optimizer", None) is not None:
            row.setdefault("learning_rate", float(np.asarray(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))))
        # Rows of a resumed run up to this epoch stay; a re-run epoch replaces its old row.
        self.rows = [r for r in self.rows if int(float(r["epoch"])) < epoch + 1] + [row]
        fields: list[str] = []
        for r in self.rows:
            fields += [k for k in r if k not in fields]
        tmp = self.csv_path.with_name(self.csv_path.name + ".tmp")
        name = self.csv_path.name
        try:
            try:
                with tmp.open("w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=fields)
                    writer.writeheader()
                    writer.writerows(self.rows)
                tmp.replace(self.csv_path)
            finally:
                tmp.unlink(missing_ok=True)
            if self.plot_path is not None:
                name = self.plot_path.name
                write_history_plot(self.rows, self.plot_path)
        except OSError as ex:
            raise run_write_error(ex, self.csv_path.parent, name) from None


def write_history_plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Loss (left) and val CER/WER (right) against the epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(int(float(r["epoch"])), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("loss", "train loss"), ("val_loss", "val loss")):
        x, y = series(key)
        if x:
            left.plot(x, y, marker="o", ms=3, label=label)
    left.set_xlabel("epoch")
    left.set_ylabel("CTC loss")
    left.set_yscale("log")
    left.legend()
    for key, label in (("val_cer", "val CER"), ("val_wer", "val WER")):
        x, y = series(key)
        if x:
            right.plot(x, [100 * v for v in y], marker="o", ms=3, label=label)
    right.set_xlabel("epoch")
    right.set_ylabel("%")
    right.legend()
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_figure(fig, path)


class Progress(keras.callbacks.Callback):
    """Forwards Keras progress to a plain `callback(event)`; the CLI draws the bars.

    Events: "epoch_begin" (epoch, epochs, steps), "batch_end" (step, steps, logs), "epoch_end"
    (epoch, epochs, logs); epochs are 1-based.
    """

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
