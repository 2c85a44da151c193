"""Named model configurations and `build_model`.

A preset is a partial `vhrmodel.model.CRNN` config without `num_classes` and `height`
(those come from the store: `Charset.num_classes` and `PreprocessSettings.height`).

- `tiny`: a few thousand parameters, for tests.
- `small`: the CPU model (<= 3 M parameters), tuned for training throughput on 2 cores.
- `base`: the GPU model, with capacity like seed 002's 13 M residual CNN + BiLSTM(256).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import keras

from vhrmodel.model import CRNN

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "stem_filters": 8,
        "stem_kernel_size": [3, 3],
        "stem_strides": [2, 2],
        "stage_filters": [16, 32],
        "stage_blocks": [1, 1],
        "stage_strides": [[2, 2], [2, 1]],
        "height_reduction": "max",
        "projection_dim": None,
        "lstm_units": 32,
        "lstm_layers": 1,
        "dropout": 0.0,
        "cnn_dropout": 0.0,
    },
    "small": {
        "stem_filters": 16,
        "stem_kernel_size": [3, 3],
        "stem_strides": [2, 2],
        "stage_filters": [32, 48, 64],
        "stage_blocks": [1, 1, 1],
        "stage_strides": [[2, 2], [2, 1], [2, 1]],
        "height_reduction": "reshape",
        "projection_dim": 128,
        "lstm_units": 128,
        "lstm_layers": 2,
        "dropout": 0.2,
        "cnn_dropout": 0.0,
    },
    "base": {
        "stem_filters": 32,
        "stem_kernel_size": [3, 3],
        "stem_strides": [1, 1],
        "stage_filters": [64, 128, 256, 384],
        "stage_blocks": [2, 2, 2, 2],
        "stage_strides": [[2, 2], [2, 2], [2, 1], [2, 1]],
        "height_reduction": "reshape",
        "projection_dim": 384,
        "lstm_units": 256,
        "lstm_layers": 3,
        "dropout": 0.25,
        "cnn_dropout": 0.05,
    },
}

# Height the presets are designed and measured for (see docs/DESIGN.md, "Model").
RECOMMENDED_HEIGHT = {"tiny": 32, "small": 48, "base": 64}


def preset_config(name: str) -> dict[str, Any]:
    """A copy of the named preset's partial CRNN config."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Choose one of {sorted(PRESETS)}. Received: preset={name!r}")
    return copy.deepcopy(PRESETS[name])


def build_model(
    preset_or_config: str | Mapping[str, Any],
    num_classes: int | None = None,
    height: int | None = None,
    *,
    alphabet: str | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> keras.Model:
    """Build an uncompiled `CRNN` from a preset name or a (partial) CRNN config.

    Args:
        preset_or_config: a name in `PRESETS` or a dict of CRNN arguments (for example a
            saved model's `get_config()`).
        num_classes: charset size + 1; defaults to `len(alphabet) + 1` when `alphabet` is given,
            else to the config's value.
        height: input height; defaults to `preprocessing["height"]`, else the config's value.
        alphabet: the charset's characters (`Charset.chars`), stored in the model file.
        preprocessing: the store's preprocessing settings as a dict, stored in the model file.
        **overrides: CRNN arguments that replace the preset's (e.g. `lstm_units=192`).

    Returns:
        A `vhrmodel.model.CRNN`.

    Example:
        >>> model = build_model("tiny", num_classes=20, height=32)
        >>> model.downsample
        4
    """
    if isinstance(preset_or_config, str):
        config = preset_config(preset_or_config)
    else:
        config = dict(copy.deepcopy(dict(preset_or_config)))
    config.update(overrides)
    if alphabet is not None:
        config["alphabet"] = str(alphabet)
        num_classes = len(alphabet) + 1 if num_classes is None else num_classes
    if preprocessing is not None:
        config["preprocessing"] = dict(preprocessing)
        if height is None and "height" in preprocessing:
            height = int(preprocessing["height"])
    if num_classes is not None:
        config["num_classes"] = int(num_classes)
    if height is not None:
        config["height"] = int(height)
    missing = [k for k in ("num_classes", "height") if k not in config]
    if missing:
        raise ValueError(f"build_model needs {' and '.join(missing)}. Received: preset_or_config={preset_or_config!r}")
    return CRNN(**config)
