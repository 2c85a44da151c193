"""`TrainConfig`: what `vhrmodel.train.train` does, one field per `vhrmodel train` option; and the
run folder's file names and checks, which the CLI runs before Keras is imported."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhrmodel.augment import AugmentConfig
from vhrmodel.errors import TrainingError
from vhrmodel.lm import LM_DIGIT_CLASS, LM_ORDER

# The files of a run folder.
BEST_MODEL = "model.keras"
LAST_MODEL = "last.keras"
HISTORY = "history.csv"
HISTORY_PLOT = "history.png"
SUMMARY = "train.json"
STATE = "state.json"
CHAR_LM = "charlm.json"

LR_SCHEDULES = ("plateau", "cosine")


@dataclass
class TrainConfig:
    """What `train` does; every field has a CLI option of the same name.

    Args:
        preset: model preset (`vhrmodel.presets.PRESETS`); None with `init_from` keeps that
            model's architecture, else "small".
        epochs: last epoch to train (with `resume`, the total, not the number of new epochs).
        batch_size: lines per batch (per replica when several GPUs are used).
        lr: initial Adam learning rate.
        fast: stream preprocessed batches from the LMDB store (the default); False decodes and
            preprocesses the image files every epoch (`--from-records`, for parity checks).
        augment: augment training batches (`augment_config`); validation never is.
        augment_config: augmentation settings; None = `AugmentConfig()` defaults.
        workers: reader worker processes (fast) or threads (slow) that build batches.
        seed: shuffling, augmentation and weight-initialisation seed.
        steps_per_epoch: cap on training steps per epoch (None = the whole split).
        val_limit: validate on at most this many lines (None = the whole split).
        early_stopping: epochs without val CER improvement before stopping (0 = never).
        early_stopping_min_delta: a smaller val CER drop does not count as an improvement.
        lr_schedule: "plateau" halves the rate after `reduce_lr_patience` epochs without val loss
            improvement; "cosine" lowers it from `lr` to `min_lr` along a half cosine over
            `epochs` (`vhrmodel.callbacks.cosine_lr`), set at the start of each epoch, so a run
            whose length is known in advance (a time budget) ends at a low rate. A resumed run
            follows the curve of the --epochs it is resumed with.
        reduce_lr_patience: (plateau) epochs without val loss improvement before the rate is halved.
        reduce_lr_min_delta: (plateau) a smaller val loss drop does not count as an improvement.
        min_lr: lower bound of the learning rate (the end of the cosine).
        clipnorm: gradient norm clipping (LSTMs under CTC occasionally spike).
        bn_momentum: momentum of every BatchNormalization layer's moving statistics during
            training; None keeps the layers' own (0.99). Short runs (a few hundred steps) need
            a lower value such as 0.9, or the inference-mode statistics lag the weights and
            validation looks far worse than training.
        ema_momentum: keep an exponential moving average of the weights (Polyak averaging, Keras'
            `use_ema`) with this momentum per step, e.g. 0.999; validation, the best model and
            last.keras use the averaged weights, and history.csv logs the raw weights' val CER as
            `val_cer_raw`. A resumed run goes on from the raw weights (kept in the optimizer's
            slots of last.keras). None: no averaging.
        grid_samples: validation lines drawn in the per-epoch PNG grid (0 = no grid).
        time_limit: stop after the epoch during which this many seconds of this call have
            passed (None = no limit); the run can be resumed later.
        tensorboard: write TensorBoard logs (TensorFlow must be importable).
        address_lm: build RUN/charlm.json from the training labels plus the address corpus of
            every administrative unit (`vhrmodel.lm`); False: the labels alone.
        lm_order: n of RUN/charlm.json's character n-gram (`vhrmodel.lm.LM_ORDER`).
        lm_digit_class: RUN/charlm.json sees every digit as one class (`vhrmodel.lm.LM_DIGIT_CLASS`).
        train_split: split to train on (and to take the model's charset from).
        val_split: split to validate on (chooses the best checkpoint and drives the schedule).
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
    early_stopping_min_delta: float = 0.0
    lr_schedule: str = "plateau"
    reduce_lr_patience: int = 4
    reduce_lr_min_delta: float = 1e-4
    min_lr: float = 1e-5
    clipnorm: float | None = 5.0
    bn_momentum: float | None = None
    ema_momentum: float | None = None
    grid_samples: int = 8
    time_limit: float | None = None
    tensorboard: bool = True
    address_lm: bool = True
    lm_order: int = LM_ORDER
    lm_digit_class: bool = LM_DIGIT_CLASS
    train_split: str = "train"
    val_split: str = "val"

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive. Received: lr={self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}. Received: {self.lr_schedule!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0. Received: workers={self.workers}")
        if self.lm_order < 1:
            raise ValueError(f"lm_order must be positive. Received: lm_order={self.lm_order}")
        if self.ema_momentum is not None and not 0.0 < self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1). Received: ema_momentum={self.ema_momentum}")
        if self.train_split == self.val_split:
            raise ValueError(f"train_split and val_split must differ. Received: both {self.train_split!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment_config"] = (self.augment_config or AugmentConfig()).to_dict() if self.augment else None
        return d


def resume_hint(run_dir: str | Path) -> str:
    """The tail of a message about a stopped run: how `--resume` goes on ("" if it cannot)."""
    last = Path(run_dir) / LAST_MODEL
    return f"; `vhrmodel train --resume` continues the run from {last}" if last.exists() else ""


def interrupted_message(run_dir: str | Path) -> str:
    """What a run stopped by Ctrl-C kept (the epochs written before it) and how to go on, in one line."""
    run_dir = Path(run_dir)
    try:
        epoch = int(json.loads((run_dir / STATE).read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        epoch = 0
    if epoch <= 0 or not (run_dir / LAST_MODEL).exists():
        return f"interrupted before the first epoch ended: nothing to keep in {run_dir}; run the command again"
    return (f"interrupted: {run_dir} keeps epoch {epoch} ({LAST_MODEL}, {BEST_MODEL}, history.csv); the epoch under "
            f"way is lost{resume_hint(run_dir)} (the same command with --resume)")


def check_run_folder(out_dir: str | Path, resume: bool, init_from: str | Path | None = None) -> None:
    """Refuse a run folder that does not fit the request, before anything heavy is loaded."""
    out_dir = Path(out_dir)
    if resume and init_from is not None:
        raise TrainingError("--resume and --init-from exclude each other: resume continues a run, init-from starts one")
    if resume and not (out_dir / LAST_MODEL).exists():
        raise TrainingError(f"nothing to resume in {out_dir}: {LAST_MODEL} is missing; start a run without --resume")
    if not resume and (out_dir / LAST_MODEL).exists():
        raise TrainingError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingError(f"--out {out_dir} is a file; choose a folder")


def train_alphabet(store, split: str = "train") -> str:
    """The characters of a split's labels, in the store alphabet's order: the model's charset.

    Held-out splits may hold characters the training labels never show; a model cannot learn
    to emit those, and evaluation counts them as errors instead of hiding them.
    """
    info = store.index.get("splits", {}).get(split, {})
    chars = info.get("alphabet")
    if chars is None:
        seen: set[str] = set()
        for sample in store.split(split):
            seen.update(sample.text)
        chars = seen
    chars = set(chars)
    return "".join(c for c in store.alphabet if c in chars)


def check_resume(out_dir: str | Path, store, config: TrainConfig, store_path: str | Path) -> dict[str, Any]:
    """Refuse a resume that cannot go on: on a store whose charset or preprocessing differ from the run's,
    or with --epochs not beyond the epochs already trained. Reads only state.json, the store's index
    and last.keras's config (no Keras), so the CLI runs it before TensorFlow loads; nothing in the
    run folder is written before it.

    Args:
        out_dir: the run folder (it holds last.keras; see `check_run_folder`).
        store: the opened store (`vhrdata.store.open_store`).
        config: the training request (its `train_split` and `epochs`).
        store_path: the store as the user named it, for the messages.

    Returns:
        The run's state.json ({} when it has none).

    Raises:
        TrainingError: the resume is refused; the message says what to do instead.
        ModelFileError: last.keras cannot be read.
    """
    from vhrdata.preprocess import PreprocessSettings
    from vhrmodel.artifact import read_model_info, settings_to_dict

    out_dir = Path(out_dir)
    state: dict[str, Any] = {}
    if (out_dir / STATE).exists():
        try:
            state = json.loads((out_dir / STATE).read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as ex:
            raise TrainingError(f"cannot read {out_dir / STATE} ({ex}), which --resume needs; restore it, or start "
                                f"a new run in another --out with --init-from {out_dir / LAST_MODEL}") from None
    initial_epoch = int(state.get("epoch", 0))
    if initial_epoch >= config.epochs:
        raise TrainingError(f"the run in {out_dir} already trained {initial_epoch} epochs; "
                            f"pass --epochs larger than {initial_epoch} to continue")
    alphabet = train_alphabet(store, config.train_split)
    settings_dict = settings_to_dict(store.settings)
    info = read_model_info(out_dir / LAST_MODEL)
    trained_on = f" (it was trained on {state['store']})" if state.get("store") else ""
    fine_tune = f"to fine-tune it on this store, train into another --out with --init-from {out_dir / BEST_MODEL}"
    if info["alphabet"] != alphabet:
        extra = "".join(sorted(set(alphabet) - set(info["alphabet"])))
        missing = "".join(sorted(set(info["alphabet"]) - set(alphabet)))
        detail = "; ".join(part for part in (f"the store adds {extra!r}" if extra else "",
                                             f"the store lacks {missing!r}" if missing else "") if part)
        raise TrainingError(f"the run in {out_dir} was trained on another charset than the train split of store "
                            f"{store_path}{f' ({detail})' if detail else ''}{trained_on}; resume on its own store, "
                            f"or {fine_tune}")
    if info["preprocessing"] != settings_dict:
        try:
            diff = "; ".join(PreprocessSettings.from_dict(dict(info["preprocessing"])).diff(
                PreprocessSettings.from_dict(settings_dict)))
        except (TypeError, ValueError):
            diff = ""
        raise TrainingError(f"the run in {out_dir} was trained with other preprocessing settings than store "
                            f"{store_path}{f' ({diff})' if diff else ''}{trained_on}; resume on its own store, "
                            f"or {fine_tune}")
    return state
