"""Training from a store: `train()` behind `vhrmodel train`.

A run folder holds `model.keras` (best by val CER), `last.keras` (with optimizer state),
`history.csv` (epochs from 1), `history.png`, `train.json`, `state.json` (what `resume`
needs, including the LR-schedule and early-stopping counters), `charlm.json` (a character
n-gram LM of the training labels plus, with `address_lm`, the address corpus of every
administrative unit, for beam search; see `vhrmodel.lm`), `samples/` (a PNG grid of validation
predictions per epoch) and `tensorboard/`.

The stages live beside this module: `config` (TrainConfig), `inputs` (the batches and the
(x, y) contract), `losses`, `callbacks` and `distribute`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable

import keras

from vhrdata.charset import Charset
from vhrdata.errors import write_failure
from vhrmodel.artifact import load_model, save_model, settings_to_dict, transfer_weights
from vhrmodel.augment import AugmentConfig, BatchAugmenter
from vhrmodel.callbacks import (
    HistoryLog,
    LastCheckpoint,
    PredictionGrid,
    Progress,
    ProgressCallback,
    ResumableEarlyStopping,
    RawWeightsCER,
    CosineSchedule,
    ResumableReduceLROnPlateau,
    Throughput,
    TimeLimit,
    swap_averaged_weights,
    ValidateAndKeepBest,
    TensorBoardLogs,
    run_write_error,
    write_run_json,
)
from vhrmodel.config import (
    BEST_MODEL,
    CHAR_LM,
    HISTORY,
    HISTORY_PLOT,
    LAST_MODEL,
    STATE,
    SUMMARY,
    TrainConfig,
    check_resume,
    check_run_folder,
    resume_hint,
    train_alphabet,
)
from vhrmodel.distribute import NullScope, adapt_to_strategy, distribution_strategy, is_chief, worker_shard
from vhrmodel.errors import ModelFileError, TrainingError
from vhrmodel.inputs import check_splits, endless_batches, records_source, store_source, tf_epochs_dataset
from vhrmodel.lm import write_store_lm
from vhrmodel.losses import CTCLoss

log = logging.getLogger(__name__)


__all__ = ["TrainConfig", "train", "check_run_folder", "set_bn_momentum",
           "BEST_MODEL", "LAST_MODEL", "HISTORY", "HISTORY_PLOT", "SUMMARY", "STATE", "CHAR_LM"]


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
    from vhrmodel.starter import resolve_model

    source = load_model(resolve_model(init_from))
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
    ema = {} if config.ema_momentum is None else {"use_ema": True, "ema_momentum": config.ema_momentum}
    optimizer = keras.optimizers.Adam(learning_rate=config.lr, clipnorm=config.clipnorm, **ema)
    # Widths vary per batch: XLA would recompile for every new shape.
    model.compile(optimizer=optimizer, loss=CTCLoss(), jit_compile=False)


def training_augmenter(config: TrainConfig, settings, downsample: int) -> BatchAugmenter | None:
    """The augmenter of training batches (None when `config.augment` is off), fitted to the store's
    preprocessing `settings` and the model's `downsample`: stretched lines stay CTC-feasible, none
    grows past the store's max width, and on a `flatten_background` store every augmented line is
    flattened again, as `predict` flattens a photo after the camera did its damage."""
    if not config.augment:
        return None
    aug_cfg = config.augment_config or AugmentConfig()
    aug_cfg = dataclasses.replace(aug_cfg, downsample=int(downsample),
                                  max_width=aug_cfg.max_width or int(settings.max_width),
                                  flatten_background=bool(settings.flatten_background))
    return BatchAugmenter(aug_cfg, seed=config.seed)


def _tensorboard_available() -> bool:
    """Keras' TensorBoard callback writes through tf.summary, which needs the tensorboard package."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("tensorflow") is None:
        log.warning("TensorBoard logs are skipped: install tensorflow and tensorboard to get them")
        return False
    return True


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

    The model's charset is the train split's characters; held-out characters outside it count
    as errors in validation and evaluation.

    Args:
        store_path: the LMDB store (`vhrdata build-lmdb` output).
        out_dir: the run folder; refused if it already holds a run, unless `resume`.
        config: what to train and how (`TrainConfig`).
        resume: continue the run in `out_dir` from `last.keras` (weights, optimizer state, epoch,
            LR schedule and early-stopping counters).
        init_from: a model file to fine-tune (e.g. pretrained on synthetic lines); its output
            layer is mapped by character onto the train split's charset.
        records: records.parquet (or its folder) for the slow path, when the store index does
            not say where its records came from.
        callback: receives progress events, dicts with "event" = "epoch_begin" (epoch, epochs,
            steps), "batch_end" (step, steps, logs), "val_progress" (done, total) or
            "epoch_end" (epoch, epochs, logs); epochs are 1-based.

    Raises:
        TrainingError: the run folder, checkpoint or store cannot be used.
        StoreError: the store is missing, stale or corrupt.
        ModelFileError: the `init_from` or resume model cannot be used.
    """
    from vhrdata.store import open_store

    config = config or TrainConfig()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_run_folder(out_dir, resume, init_from)
    store = open_store(store_path)
    check_splits(store, config)
    alphabet = train_alphabet(store, config.train_split)
    charset = Charset(alphabet)
    settings_dict = settings_to_dict(store.settings)

    # The CLI ran this check before Keras loaded; library callers get it here.
    state: dict[str, Any] = check_resume(out_dir, store, config, store_path) if resume else {}
    initial_epoch = int(state.get("epoch", 0))
    keras.utils.set_random_seed(config.seed + initial_epoch)

    strategy = distribution_strategy()
    shard_index, num_shards = worker_shard() if strategy is not None else (0, 1)
    chief = is_chief()
    # Non-chief workers of a cluster write their checkpoints aside; only the chief's run folder counts.
    run_dir = out_dir if chief else out_dir / f".worker-{shard_index}"
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    # --batch-size is per replica; each worker reads its share of the global batch.
    data_config = dataclasses.replace(config, batch_size=config.batch_size * replicas // num_shards)

    transfer = None
    with strategy.scope() if strategy is not None else NullScope():
        if resume:
            model = load_model(out_dir / LAST_MODEL, compile=True)
            swap_averaged_weights(model)  # go on from the raw weights, not the averages saved as weights
            if config.bn_momentum is not None:
                set_bn_momentum(model, config.bn_momentum)
        else:
            model, transfer = _build(config, alphabet, settings_dict, init_from)
            if config.bn_momentum is not None:
                set_bn_momentum(model, config.bn_momentum)
            _compile(model, config)
    adapt_to_strategy(model, strategy)
    downsample = int(model.downsample)
    store_downsample = int((store.index.get("build") or {}).get("downsample", downsample))
    if store_downsample != downsample:
        raise TrainingError(
            f"store {store_path} checked CTC feasibility for downsample {store_downsample}, the model downsamples "
            f"by {downsample}; rebuild the store with `vhrdata build-lmdb --downsample {downsample}`"
        )

    augmenter = training_augmenter(config, store.settings, downsample)
    if config.fast:
        source = store_source(store, data_config, charset, augmenter, num_shards=num_shards, shard_index=shard_index)
    else:
        source = records_source(store, data_config, charset, augmenter, records=records)
    steps = source.steps
    if keras.backend.backend() == "tensorflow":
        # A --steps-per-epoch cap shorter than an epoch needs an endless dataset (see tf_epochs_dataset).
        capped = config.steps_per_epoch is not None and config.steps_per_epoch < steps
        train_data = tf_epochs_dataset(source.epoch_batches, None if capped else steps, store.settings.height,
                                       initial_epoch)
        width_multiple = 1
    else:
        width_multiple = 64
        train_data = endless_batches(source.epoch_batches, initial_epoch, width_multiple)

    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        write_store_lm(store, run_dir / CHAR_LM, split=config.train_split, order=config.lm_order,
                       address_lm=config.address_lm, seed=config.seed, digit_class=config.lm_digit_class)
    except OSError as ex:
        raise run_write_error(ex, run_dir, CHAR_LM) from None
    if config.steps_per_epoch is not None:
        steps = min(config.steps_per_epoch, steps)
    validation = ValidateAndKeepBest(source, run_dir / BEST_MODEL, charset, best=state.get("best_val_cer"),
                                     best_epoch=state.get("best_epoch"), width_multiple=width_multiple,
                                     callback=callback)
    throughput = Throughput(source.train_size, config.steps_per_epoch, data_config.batch_size)
    saved = state.get("callbacks") or {}
    # The plateau schedule follows val loss, not val CER: CER sits at 100 % through the first
    # epochs of CTC training (all blanks) while the loss already falls, and a CER plateau
    # there would halve the rate before learning starts.
    schedule: list[Any] = [
        CosineSchedule(config.epochs, config.lr, config.min_lr) if config.lr_schedule == "cosine" else
        ResumableReduceLROnPlateau(
            monitor="val_loss", mode="min", factor=0.5, patience=config.reduce_lr_patience, min_lr=config.min_lr,
            min_delta=config.reduce_lr_min_delta, initial_state=saved.get("ResumableReduceLROnPlateau"))]
    if config.early_stopping:
        schedule.append(ResumableEarlyStopping(monitor="val_cer", mode="min", patience=config.early_stopping,
                                               min_delta=config.early_stopping_min_delta,
                                               initial_state=saved.get("ResumableEarlyStopping")))
    callbacks = [throughput, validation, *schedule]  # validation first: the others read val_cer/val_loss
    if getattr(model.optimizer, "use_ema", False):  # a resumed run keeps the averaging it was compiled with
        # The raw weights' CER first, then the averaged weights swapped in for every later callback
        # (validation, the best model, last.keras) until the next epoch begins.
        callbacks[:0] = [RawWeightsCER(validation), keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]
    callbacks.append(HistoryLog(run_dir / HISTORY, run_dir / HISTORY_PLOT))
    if config.tensorboard and _tensorboard_available():
        callbacks.append(TensorBoardLogs(log_dir=str(run_dir / "tensorboard"), write_graph=False,
                                      update_freq="batch", profile_batch=0))
    if config.grid_samples:
        callbacks.append(PredictionGrid(source, run_dir / "samples", charset, config.grid_samples, width_multiple))
    callbacks.append(LastCheckpoint(run_dir, LAST_MODEL, STATE, validation, config, {"store": str(store_path)},
                                    schedule))
    time_limit = TimeLimit(config.time_limit, started) if config.time_limit else None
    if time_limit is not None:
        callbacks.append(time_limit)
    if callback is not None:
        callbacks.append(Progress(callback, steps, config.epochs))

    log.info("training %s (%d params) on %d lines, validating on %d, %s input",
             model.name, model.count_params(), source.train_size, source.val_size, source.description["input"])
    try:
        model.fit(train_data, epochs=config.epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=config.steps_per_epoch or (None if keras.backend.backend() == "tensorflow" else steps),
                  callbacks=callbacks, verbose=0, shuffle=False)  # the inputs shuffle themselves, per seed
    except ModelFileError as ex:  # a checkpoint could not be written (a full disk); the previous one is kept
        raise ModelFileError(f"{ex}{resume_hint(run_dir)}") from None

    if not (run_dir / BEST_MODEL).exists():
        # val CER never beat the resumed best (or was NaN): still leave a usable model.
        save_model(model, run_dir / BEST_MODEL, include_optimizer=False)
    history = _read_history(run_dir / HISTORY)
    summary = {
        "store": str(store_path),
        "run_dir": str(run_dir),
        "preset": config.preset or ("small" if init_from is None else "from init model"),
        "params": int(model.count_params()),
        "model_bytes": (run_dir / BEST_MODEL).stat().st_size,
        "charset_size": len(charset),
        "epochs_run": len(history),
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
        "worker_index": shard_index,
        "chief": chief,
        "resumed_from_epoch": initial_epoch if resume else None,
        "stopped_by_time_limit": time_limit is not None and time_limit.stopped_epoch is not None,
        "stopped_early": len(history) < config.epochs and not (time_limit and time_limit.stopped_epoch),
        "init_from": str(init_from) if init_from else None,
        "transfer": transfer,
        "config": config.to_dict(),
        **source.description,
    }
    try:
        write_run_json(run_dir / SUMMARY, summary)
    except OSError as ex:  # training is done: only its summary is missing
        raise TrainingError(write_failure(
            ex, run_dir, f"training finished and {BEST_MODEL} and {LAST_MODEL} are saved; only this summary of the "
            "run was not written", SUMMARY, elsewhere="", then="")) from None
    return summary
