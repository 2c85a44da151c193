"""Which optional parts of vhr an install has, and the one-line hint of what to install.

`pip install vhr` gives the data package and the Keras-free parts of the model package
(decoding, preprocessing, runtimes of exported models). The extras add the rest:

- `train`: TensorFlow, Keras and TensorBoard, which training, evaluation and prediction with
  a `.keras` model, and `vhrmodel export`, need;
- `lite`: ONNX Runtime and LiteRT, which run an exported model without TensorFlow. A light
  install also reads with the lexicon (`--lexicon`), whose rapidfuzz is a core dependency:
  `LITE_MODULES` lists everything it runs on, and `require_lite` checks one of them.

The checks look a module up without importing it, so a command that lacks Keras says so in a
second instead of failing deep inside with a traceback.
"""

from __future__ import annotations

import importlib.util
import os

from vhrmodel.errors import MissingDependencyError

TRAIN_HINT = "pip install 'vhr[train]'"
# What a light install runs on beyond the core's numpy and OpenCV, by the part that needs it:
# the runtimes of ONNX and LiteRT exports, and rapidfuzz for lexicon snapping.
LITE_MODULES = {"onnx": "onnxruntime", "litert": "ai_edge_litert", "lexicon": "rapidfuzz"}
# The module Keras imports for each KERAS_BACKEND.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}


def installed(module: str) -> bool:
    """Whether `module` can be imported, checked without importing it.

    Args:
        module: a top-level module name, e.g. "keras".

    Returns:
        False when it is not installed, or an import hook refuses it.
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_keras() -> list[str]:
    """The modules a Keras model needs that this install lacks: keras and its backend (KERAS_BACKEND)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    needed = ["keras", BACKEND_MODULES.get(backend, backend)]
    return [m for m in needed if not installed(m)]


def require(modules: list[str], extra: str, purpose: str, note: str = "") -> None:
    """Raise a one-line `MissingDependencyError` unless every module in `modules` is installed.

    Args:
        modules: top-level module names.
        extra: the vhr extra that installs them, e.g. "serve".
        purpose: what needs them, as the message should name it.
        note: said after the install hint, in parentheses (e.g. an alternative).

    Raises:
        MissingDependencyError: the message names the missing modules and `pip install 'vhr[EXTRA]'`.
    """
    missing = [m for m in modules if not installed(m)]
    if missing:
        raise MissingDependencyError(f"{purpose} needs {' and '.join(missing)}, which this install lacks: "
                                     f"pip install 'vhr[{extra}]'" + (f" ({note})" if note else ""))


def require_lite(part: str, purpose: str) -> None:
    """Raise a one-line `MissingDependencyError` unless the module a part of the light install needs is installed.

    Args:
        part: a key of `LITE_MODULES` ("onnx", "litert" or "lexicon").
        purpose: what needs it, as the message should name it.

    Raises:
        MissingDependencyError: the message names the module and `pip install 'vhr[lite]'`.
    """
    require([LITE_MODULES[part]], "lite", purpose)


def import_failed(module: str, extra: str, purpose: str, ex: ImportError) -> MissingDependencyError:
    """The one-line error for a module that is installed but does not import (a broken install)."""
    first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
    return MissingDependencyError(f"{purpose} needs {module}, which is installed but does not import ({first}); "
                                  f"reinstall it: pip install --force-reinstall 'vhr[{extra}]'")


def require_keras(purpose: str, training: bool = False) -> None:
    """Raise a one-line `MissingDependencyError` unless Keras (and TensorFlow, for training) is installed.

    Args:
        purpose: what needs Keras, as the message should name it, e.g. "`vhrmodel train`".
        training: also require TensorFlow, whose tf.data feeds training whatever the backend.

    Raises:
        MissingDependencyError: a needed module is not installed; the message says what to install.
    """
    missing = missing_keras()
    if training and "tensorflow" not in missing and not installed("tensorflow"):
        missing.append("tensorflow")
    if missing:
        raise MissingDependencyError(
            f"{purpose} needs {' and '.join(missing)}, which this install lacks: {TRAIN_HINT} "
            f"(a light install predicts and serves with an export folder from `vhrmodel export`)")
