"""Runtimes: what turns a padded batch of preprocessed lines into logits.

Every consumer of a model — training's validation, evaluation, `predict`, the server — calls
`runtime.logits(images, widths)` and decodes the result with `vhrmodel.decoding`, so a line
gives the same logits and text wherever it is read. `KerasRuntime` wraps a Keras model; the
exported formats add their own runtimes (`vhrmodel.export`), with the same interface:

- `logits(images uint8 [B, H, W], widths int32 [B]) -> float32 [B, W // downsample, C]`;
- `alphabet`, `preprocessing` (dict), `downsample`, `height`, `name`, and optionally
  `blank_margin` (the blank logit of the frames past a line's own, `BLANK_MARGIN` if absent).

This module imports neither TensorFlow nor Keras at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vhrdata.batching import bucketed_plan, pad_images, round_up
from vhrdata.ctc import frames_for_width
from vhrdata.preprocess import PAD_VALUE

# The blank logit the model gives the frames past a line's own (`vhrmodel.model.BlankPadding`'s default).
BLANK_MARGIN = 30.0


class Runtime(Protocol):
    """The interface every runtime offers (see the module docstring)."""

    alphabet: str
    preprocessing: dict[str, Any]
    downsample: int
    height: int
    name: str

    def logits(self, images: np.ndarray, widths: np.ndarray) -> np.ndarray: ...


def frame_lengths(widths, downsample: int, frames: int) -> np.ndarray:
    """Each line's own frame count, clipped to the `frames` the model returned (at least 1)."""
    return np.clip(frames_for_width(np.asarray(widths), downsample), 1, max(1, frames)).astype(np.int32)


def blank_frames(n: int, frames: int, classes: int, margin: float = BLANK_MARGIN) -> np.ndarray:
    """float32 [n, frames, classes] logits of certain blanks: `margin` for class 0, 0 elsewhere."""
    out = np.zeros((n, frames, classes), np.float32)
    out[:, :, 0] = margin
    return out


def batch_logits(runtime: Runtime, images: list[np.ndarray], group: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(logits [B, T, C], own frame counts [B]) of preprocessed (H, W) images.

    Args:
        runtime: the model.
        images: the lines, in any order.
        group: None runs all lines in one call, padded to the widest. A number runs more lines
            than that in calls of at most `group` lines of similar width (as few calls as
            possible, of even sizes, by `vhrdata.batching.bucketed_plan`), each padded only
            to its own widest line; the logits come back in input order, and the frames past a
            call's own are certain blanks (as the model gives past a line's own frames). The
            model is batch-invariant, so a line's logits on its own frames do not depend on
            its group.
    """
    if group is not None and group < 1:
        raise ValueError(f"group must be positive. Received: group={group}")
    if group is None or len(images) <= group:
        batch, widths = pad_images(images)
        logits = runtime.logits(batch, widths)
        return logits, frame_lengths(widths, runtime.downsample, logits.shape[1])
    calls = -(-len(images) // group)
    plan = bucketed_plan(np.array([im.shape[1] for im in images]), -(-len(images) // calls))
    parts = [(idx, batch_logits(runtime, [images[i] for i in idx])) for idx in plan]
    frames = max(logits.shape[1] for _, (logits, _) in parts)
    out = blank_frames(len(images), frames, parts[0][1][0].shape[2], getattr(runtime, "blank_margin", BLANK_MARGIN))
    lengths = np.zeros(len(images), np.int32)
    for idx, (logits, own) in parts:
        out[idx, : logits.shape[1]] = logits
        lengths[idx] = own
    return out, lengths


class KerasRuntime:
    """A Keras model (`CRNN`) as a runtime.

    Args:
        model: a loaded model with `alphabet`, `preprocessing` and `downsample`.
        width_multiple: pad batch widths up to a multiple of this; None = 1 on TensorFlow and
            64 on XLA backends (JAX), which compile once per input shape. The padding is
            masked by the model, so the logits of a line's own frames do not change.
    """

    name = "keras"

    def __init__(self, model, width_multiple: int | None = None):
        import keras

        self.model = model
        self.alphabet = model.alphabet
        self.preprocessing = dict(model.preprocessing or {})
        self.downsample = int(model.downsample)
        self.height = int(model.height)
        try:
            self.blank_margin = float(model.get_layer("blank_padding").margin)
        except (ValueError, AttributeError):
            self.blank_margin = BLANK_MARGIN
        self.backend = keras.backend.backend()
        if width_multiple is None:
            width_multiple = 1 if self.backend == "tensorflow" else 64
        self.width_multiple = int(width_multiple)
        # Under MultiWorkerMirroredStrategy, predict_on_batch splits a batch over the workers
        # and hands back this worker's part only; a direct call reads the whole batch here.
        strategy = getattr(model, "distribute_strategy", None) if self.backend == "tensorflow" else None
        # (tf.distribute.MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy inside.)
        self._direct_call = any(n in type(strategy).__name__ for n in ("MultiWorker", "CollectiveAllReduce"))

    def logits(self, images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        w = images.shape[2]
        target = round_up(max(w, self.downsample), self.width_multiple)
        if target != w:
            images = np.pad(images, ((0, 0), (0, 0), (0, target - w)), constant_values=PAD_VALUE)
        x = {"images": images[..., None], "widths": np.asarray(widths, np.int32)}
        if self._direct_call:
            out = np.asarray(self.model(x, training=False), np.float32)
        else:
            out = np.asarray(self.model.predict_on_batch(x), np.float32)
        return out[:, : max(1, w // self.downsample)] if target != w else out


def open_runtime(model) -> Runtime:
    """A runtime for `model`: a Runtime, a loaded Keras model, a `.keras` file, "starter", or an
    exported folder (its `vhr-model.json` names the format and so the runtime).

    Raises:
        ModelFileError: the path is missing or not a model vhr can read.
    """
    from vhrmodel.errors import ModelFileError

    if hasattr(model, "logits") and hasattr(model, "alphabet"):
        return model
    if not isinstance(model, (str, Path)):
        return KerasRuntime(model)
    from vhrmodel.starter import resolve_model

    path = resolve_model(model)
    if path.is_dir():
        try:
            from vhrmodel.export import open_exported
        except ImportError:
            raise ModelFileError(f"{path} is a folder, and this vhr cannot read exported models; pass a .keras file") from None
        return open_exported(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist; train one with `vhrmodel train`, or use --model starter")
    from vhrmodel.artifact import load_model

    return KerasRuntime(load_model(path))
