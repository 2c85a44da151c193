"""`vhrmodel train`."""

from __future__ import annotations

import os
import sys

import click

from vhrdata.cli.common import handle_errors
from vhrmodel.lm import LM_DIGIT_CLASS, LM_ORDER
from vhrmodel.config import LR_SCHEDULES

PRESET_NAMES = ("tiny", "small", "base")


def _fmt_loss(logs) -> str | None:
    loss = (logs or {}).get("loss")
    return None if loss is None else f"loss {float(loss):.3f}"


class EpochBars:
    """Turns `train`'s progress events into bars and summary lines on stderr/stdout.

    Per epoch: a step bar with the running loss and ETA, then a validation bar (from the
    "val_progress" events), then one summary line. Before the first epoch it prints where the
    run's TensorBoard logs and history.png are.
    """

    def __init__(self, run_dir: str, quiet: bool = False, tensorboard: bool = True):
        self.run_dir = run_dir
        self.quiet = quiet
        self.tensorboard = tensorboard
        self.bar = None
        self.started = False

    def _open(self, length: int, label: str, item_show_func=None):
        self.close()
        self.bar = click.progressbar(length=max(length, 1), label=label, file=sys.stderr, show_pos=True,
                                     show_eta=True, item_show_func=item_show_func, width=24)
        self.bar.__enter__()

    def _first(self) -> None:
        if self.started:
            return
        self.started = True
        if self.tensorboard:
            click.echo(f"TensorBoard: run `tensorboard --logdir {self.run_dir}/tensorboard` and open http://localhost:6006")
        click.echo(f"Plots: {self.run_dir}/history.png (loss, val CER and WER per epoch; rewritten every epoch), "
                   f"samples: {self.run_dir}/samples/")

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "epoch_begin":
            self._first()
            if not self.quiet:
                self._open(event["steps"], f"epoch {event['epoch']}/{event['epochs']}", _fmt_loss)
        elif kind == "batch_end" and self.bar is not None:
            self.bar.update(1, event.get("logs"))
        elif kind == "val_progress" and not self.quiet:
            if self.bar is None or self.bar.label != "validating":
                self._open(event["total"], "validating")
            self.bar.update(event["done"] - self.bar.pos)
        elif kind == "epoch_end":
            self.close()
            logs = event["logs"]
            parts = [f"epoch {event['epoch']}/{event['epochs']}"]
            for key, fmt in (("loss", "loss {:.3f}"), ("val_loss", "val loss {:.3f}"), ("val_cer", "val CER {:.2%}"),
                             ("val_wer", "val WER {:.2%}"), ("learning_rate", "lr {:.2g}")):
                if logs.get(key) is not None:
                    parts.append(fmt.format(float(logs[key])))
            click.echo(" · ".join(parts))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _augment_config(path: str | None):
    from vhrmodel.augment import AugmentConfig

    if path is None:
        return None
    if path == "camera":
        return AugmentConfig.with_camera()
    if not os.path.isfile(path):
        raise click.BadParameter(f"{path} is neither 'camera' nor a file", param_hint="--augment-config")
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping of augmentation settings", param_hint="--augment-config")
    try:
        return AugmentConfig.from_dict(data)
    except (TypeError, ValueError) as ex:
        raise click.BadParameter(str(ex), param_hint="--augment-config") from None


@click.command("train")
@click.option("--store", required=True, type=click.Path(path_type=str), help="The store (`vhrdata build-lmdb` output).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str), help="Run folder.")
@click.option("--fast/--from-records", default=True, show_default=True,
              help="--fast (the default) streams preprocessed batches from the LMDB store; --from-records decodes "
                   "and preprocesses the image files of records.parquet every epoch (slow; for parity checks).")
@click.option("--records", type=click.Path(path_type=str), default=None,
              help="records.parquet (or its folder) for --from-records, if the store does not record it.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
              help="Model preset. Default: small, or the --init-from model's architecture.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Last epoch to train (with --resume: the total, not the number of new epochs).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Lines per batch (per GPU when several are used).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Initial Adam learning rate (see --lr-schedule).")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default="plateau", show_default=True,
              help="plateau: halve the rate when val loss stops improving for --lr-patience epochs; cosine: lower "
                   "it from --lr to 1e-5 along a half cosine over --epochs (for a run of known length: with "
                   "--time-limit, choose --epochs that fit in it).")
@click.option("--lr-patience", type=click.IntRange(min=1), default=4, show_default=True,
              help="(plateau) Epochs without val loss improvement before the learning rate is halved.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Augment training batches.")
@click.option("--augment-config", type=str, default=None, metavar="FILE|camera",
              help="YAML/JSON file of AugmentConfig fields (e.g. p_elastic: 0.5), or `camera`: the defaults plus "
                   "phone-camera effects (uneven light, shadows, ruled lines, perspective, motion blur, JPEG) "
                   "at probability 0.3 each.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.keras (weights, optimizer, epoch).")
@click.option("--init-from", type=click.Path(path_type=str), default=None,
              help="Fine-tune this model file; its output layer is mapped onto the store's alphabet by character.")
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="Processes (fast) or threads (slow path) that prepare and augment batches.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None, help="Cap training steps per epoch.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, help="Validate on at most this many lines.")
@click.option("--patience", type=click.IntRange(min=0), default=10, show_default=True,
              help="Stop after this many epochs without val CER improvement (0: never).")
@click.option("--bn-momentum", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="BatchNorm moving-average momentum while training (default: the layers' 0.99); "
                   "use about 0.9 for runs of only a few hundred steps.")
@click.option("--ema", "ema_momentum", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
              help="Average the weights (exponential moving average with this momentum per step, e.g. 0.999); "
                   "validation and the saved models use the averages; history.csv logs val_cer_raw too.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after the epoch in which this many minutes have passed (resume later with --resume).")
@click.option("--no-tensorboard", is_flag=True, help="Do not write TensorBoard logs.")
@click.option("--address-lm/--no-address-lm", default=True, show_default=True,
              help="Build RUN/charlm.json from the training labels plus every administrative unit name "
                   "(vietnamadminunits); --no-address-lm: the labels alone.")
@click.option("--lm-order", type=click.IntRange(min=1), default=LM_ORDER, show_default=True,
              help="n of RUN/charlm.json's character n-gram (`vhrmodel build-lm` rebuilds it at another).")
@click.option("--lm-digit-class/--no-lm-digit-class", default=LM_DIGIT_CLASS, show_default=True,
              help="RUN/charlm.json sees every digit as one class (where a number goes, not which digits).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; one line per epoch.")
@handle_errors
def train_cmd(store, out, fast, records, preset, epochs, batch_size, lr, lr_schedule, lr_patience, augment, augment_config, resume, init_from,
              workers, seed, steps_per_epoch, val_limit, patience, bn_momentum, ema_momentum, time_limit, no_tensorboard,
              address_lm, lm_order, lm_digit_class, quiet):
    """Train a recogniser on a store; keeps the best model by validation CER.

    Writes OUT/model.keras (best val CER), OUT/last.keras (for --resume), OUT/history.csv and
    OUT/history.png (loss, val CER and WER per epoch, rewritten every epoch), OUT/train.json (samples/s, wall time, parameters, best val CER), OUT/samples/epoch_NNN.png
    (validation predictions) and OUT/tensorboard/ (watch it with `tensorboard --logdir
    OUT/tensorboard`). The model file carries the store's alphabet and preprocessing settings.
    The run folder, the store and its train and val splits and --init-from are checked before
    TensorFlow loads. Shows a bar per epoch (running loss, ETA) and one for validation.

    Example:

    \b
        vhrmodel train --store work/store --out work/runs/small --preset small --epochs 40

    \b
        vhrmodel train --store work/real-store --out work/runs/ft --init-from starter
    """
    from pathlib import Path

    from vhrmodel.cli.checks import check_model_path, open_store_checked
    from vhrmodel.config import TrainConfig, check_resume, check_run_folder, interrupted_message
    from vhrmodel.extras import require_keras

    # A light install (no Keras) is told what to install before anything else is checked.
    require_keras("`vhrmodel train`", training=True)

    # Everything that can be wrong with the request is found here, before Keras is imported.
    check_run_folder(out, resume, init_from)
    try:
        config = TrainConfig(preset=preset, epochs=epochs, batch_size=batch_size, lr=lr, fast=fast, augment=augment,
                             augment_config=_augment_config(augment_config), workers=workers, seed=seed,
                             steps_per_epoch=steps_per_epoch, val_limit=val_limit, early_stopping=patience,
                             lr_schedule=lr_schedule, reduce_lr_patience=lr_patience,
                             bn_momentum=bn_momentum, ema_momentum=ema_momentum, time_limit=time_limit * 60 if time_limit else None, tensorboard=not no_tensorboard,
                             address_lm=address_lm, lm_order=lm_order, lm_digit_class=lm_digit_class)
    except ValueError as ex:
        raise click.BadParameter(str(ex)) from None
    opened = open_store_checked(store, {config.train_split: "training", config.val_split: "validation"})
    if resume:  # a store of another charset or preprocessing, or --epochs already reached
        check_resume(out, opened, config, store)
    if init_from is not None:
        check_model_path(init_from, "--init-from")
    if records is not None and not Path(records).exists():
        raise click.BadParameter(f"{records} does not exist", param_hint="--records")

    from vhrmodel.train import train

    bars = EpochBars(out, quiet=quiet, tensorboard=not no_tensorboard)
    try:
        summary = train(store, out, config, resume=resume, init_from=init_from, records=records, callback=bars)
    except KeyboardInterrupt:  # Ctrl-C: one line on what the run folder keeps and how to go on
        raise click.ClickException(interrupted_message(out)) from None
    finally:
        bars.close()
    best = summary["best_val_cer"]
    click.echo(f"best val CER {best:.2%} at epoch {summary['best_epoch']}" if best is not None else "no val CER")
    sps = summary["train_samples_per_s"]
    click.echo(f"{summary['params']:,} parameters · {summary['model_bytes'] / 1e6:.2f} MB · "
               f"{sps if sps is not None else '-'} samples/s · {summary['wall_seconds']:.0f} s")
    click.echo(f"wrote {out}/model.keras; curves in {out}/history.png and {out}/history.csv")
    if not no_tensorboard:
        click.echo(f"see the run in TensorBoard: tensorboard --logdir {out}/tensorboard")


COMMANDS = [train_cmd]
