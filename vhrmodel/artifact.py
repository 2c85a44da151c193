"""The model file: a Keras `.keras` archive that carries its charset and preprocessing settings.

A model is only useful with the alphabet that decodes its output and the exact preprocessing
its training images went through, so both live in the model's own config (`CRNN.alphabet`,
`CRNN.preprocessing`) and `load_model` refuses a file that lacks them, instead of decoding
with a wrong alphabet or feeding differently scaled images.

The archive also holds `vhr.json`: the sha256 of its weights file and the model format
version. Loading checks the zip's own CRCs, then the weights checksum, so a damaged file, or
one rewritten around damaged weights, is refused instead of predicting with other weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vhrdata.charset import Charset
from vhrdata.errors import write_failure
from vhrmodel.errors import ModelFileError

log = logging.getLogger(__name__)

MODEL_SUFFIX = ".keras"
CHECKSUM_FILE = "vhr.json"
WEIGHTS_FILE = "model.weights.h5"
#: The model format this vhr reads and writes (`CRNN`'s `format_version`; here, so reading a model's info needs
#: no Keras). 2: the model takes each line's width and its output no longer depends on the batch padding. Files
#: of format 1 (no `format_version`) read their padding and are refused on load.
FORMAT_VERSION = 2
RETRAIN = "retrain it with this vhr (`vhrmodel train`), or start from the shipped `--init-from starter`"


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist; train one with `vhrmodel train`")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder; pass the model file inside it (e.g. {path / 'model.keras'})")
    return path


def read_model_info(path: str | Path) -> dict[str, Any]:
    """Read a model file's class, config, alphabet and preprocessing without building the model.

    Raises:
        ModelFileError: the file is missing, not a Keras archive, or lacks charset/preprocessing.
    """
    path = _check_path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
            stamp = json.loads(zf.read(CHECKSUM_FILE)) if CHECKSUM_FILE in zf.namelist() else None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError,
            zlib.error) as ex:
        raise ModelFileError(f"{path} is not a readable Keras model archive (.keras): {ex}; "
                             "copy it again or retrain it") from None
    inner = config.get("config") or {}
    alphabet = inner.get("alphabet")
    preprocessing = inner.get("preprocessing")
    missing = [name for name, value in (("charset", alphabet), ("preprocessing settings", preprocessing)) if not value]
    if missing:
        raise ModelFileError(
            f"{path} lacks its {' and '.join(missing)}, so its output cannot be decoded or its input "
            "prepared; use a model written by `vhrmodel train` (which copies both from the store)"
        )
    version = inner.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} is a model of format {version or 1}, whose output depended on the padding of its batch; "
            f"this vhr reads format {FORMAT_VERSION}: {RETRAIN}"
        )
    if stamp is None:
        raise ModelFileError(f"{path} has no weights checksum ({CHECKSUM_FILE}); it was not written by "
                             f"`vhrmodel.artifact.save_model`: {RETRAIN}")
    return {
        "class_name": config.get("class_name"),
        "config": inner,
        "alphabet": alphabet,
        "preprocessing": preprocessing,
        "weights_sha256": stamp.get("weights_sha256"),
    }


def weights_sha256(path: str | Path) -> str:
    """The sha256 of the weights inside a `.keras` archive (reading it also checks the zip CRC)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as zf, zf.open(WEIGHTS_FILE) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a whole file (the source hash exports record)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_model_file(path: str | Path) -> dict[str, Any]:
    """`read_model_info`, plus the zip CRCs and the weights checksum; returns the info.

    Raises:
        ModelFileError: the file is damaged, or its weights are not those it was saved with.
    """
    info = read_model_info(path)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
        if bad is not None:
            raise ModelFileError(f"{path} is damaged: {bad} fails its CRC; copy it again or retrain it")
        actual = weights_sha256(path)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error) as ex:
        raise ModelFileError(f"{path} is damaged ({ex}); copy it again or retrain it") from None
    if actual != info["weights_sha256"]:
        raise ModelFileError(f"{path} is damaged: its weights do not match the checksum they were saved with; "
                             "copy it again or retrain it")
    return info


def save_model(model, path: str | Path, include_optimizer: bool = True) -> Path:
    """Save `model` to `path`, atomically.

    Args:
        model: a model with `alphabet` and `preprocessing` (a `CRNN`).
        path: the `.keras` file.
        include_optimizer: keep the optimizer state of a compiled model (for resuming). Without
            it the file holds the weights alone, a third of the size with Adam.

    Raises:
        ModelFileError: the model has no alphabet or preprocessing settings, or the file cannot be
            written (a full disk, an I/O error); the previous file at `path` is then unchanged and no
            temporary file is left.
    """
    if not getattr(model, "alphabet", None) or not getattr(model, "preprocessing", None):
        raise ModelFileError(
            "refusing to save a model without its charset and preprocessing settings; build it with "
            "vhrmodel.presets.build_model(..., alphabet=..., preprocessing=...)"
        )
    from vhrdata.records import fsync_path  # (records.py imports pandas; reading a model does not need it)

    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        raise ValueError(f"model files end in {MODEL_SUFFIX}. Received: path={str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras wants the .keras suffix on the file it writes; a reader must never see half a file.
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{MODEL_SUFFIX}")
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        # Keras 3 always saves a compiled model's optimizer; an uncompiled twin holds the weights alone.
        twin = model.__class__.from_config(model.get_config())
        twin.set_weights(model.get_weights())
        model = twin
    try:
        model.save(tmp)
        stamp = {"format_version": model.get_config().get("format_version"), "weights_sha256": weights_sha256(tmp)}
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(CHECKSUM_FILE, json.dumps(stamp))
        fsync_path(tmp)
        os.replace(tmp, path)
    except OSError as ex:  # a full disk, an I/O error: the file at `path` is still the previous one
        kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
        raise ModelFileError(write_failure(ex, path.parent, kept, path.name)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(path: str | Path, compile: bool = False):
    """Load a model file written by `save_model`; checks the charset and preprocessing first.

    Args:
        path: the `.keras` file.
        compile: also restore the loss and optimizer state (for resuming training).

    Raises:
        ModelFileError: see `verify_model_file`, or Keras cannot rebuild the model.
        MissingDependencyError: Keras (or its backend) is not installed.
    """
    from vhrmodel.extras import require_keras

    require_keras(f"reading the Keras model {path}")
    import keras

    import vhrmodel.losses  # noqa: F401  (registers CTCLoss for compiled models)
    import vhrmodel.model  # noqa: F401  (registers the model classes)

    path = Path(path)
    verify_model_file(path)
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as ex:  # Keras raises many types for a file it cannot rebuild
        raise ModelFileError(f"cannot load model {path}: {str(ex).splitlines()[0] if str(ex) else type(ex).__name__}; "
                             f"{RETRAIN}") from None


def model_charset(model) -> Charset:
    """The charset stored in the model."""
    return Charset(model.alphabet)


def model_settings(model):
    """The store preprocessing settings stored in the model (`vhrdata.preprocess.PreprocessSettings`)."""
    from vhrdata.preprocess import PreprocessSettings

    try:
        return PreprocessSettings.from_dict(dict(model.preprocessing))
    except (TypeError, ValueError) as ex:
        raise ModelFileError(f"the model's preprocessing settings are not usable by this vhr: {ex}") from None


def settings_to_dict(settings) -> dict[str, Any]:
    """Preprocessing settings as the JSON-able dict stored in the model."""
    return json.loads(settings.to_json())


def transfer_weights(source, target, output_layer: str = "logits") -> dict[str, Any]:
    """Copy weights from `source` into `target`, mapping the output layer by character.

    Layers are matched by name and copied when every weight shape agrees. The output layer's
    columns are copied per character: the blank and each character both alphabets share keep
    their trained weights; characters new in `target` keep their fresh initialisation, and
    characters only `source` had are dropped.

    Returns:
        A report: copied/skipped layer names and the shared/new/dropped characters.
    """
    copied, skipped = [], []
    src_layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if layer.name == output_layer or not layer.weights:
            continue
        src = src_layers.get(layer.name)
        if src is None:
            skipped.append(layer.name)
            continue
        src_w, dst_w = src.get_weights(), layer.get_weights()
        if len(src_w) != len(dst_w) or any(a.shape != b.shape for a, b in zip(src_w, dst_w)):
            skipped.append(layer.name)
            continue
        layer.set_weights(src_w)
        copied.append(layer.name)

    src_head = source.get_layer(output_layer)
    dst_head = target.get_layer(output_layer)
    (src_k, src_b), (dst_k, dst_b) = src_head.get_weights(), dst_head.get_weights()
    src_alpha, dst_alpha = source.alphabet or "", target.alphabet or ""
    shared = [c for c in dst_alpha if c in src_alpha]
    report = {
        "copied_layers": copied,
        "skipped_layers": skipped,
        "shared_chars": len(shared),
        "new_chars": "".join(c for c in dst_alpha if c not in src_alpha),
        "dropped_chars": "".join(c for c in src_alpha if c not in dst_alpha),
    }
    if src_k.shape[0] != dst_k.shape[0]:
        report["skipped_layers"].append(output_layer)
        log.warning("output layer input sizes differ (%d vs %d); it keeps its fresh weights", src_k.shape[0], dst_k.shape[0])
        return report
    dst_k, dst_b = np.array(dst_k), np.array(dst_b)
    src_index = {c: i + 1 for i, c in enumerate(src_alpha)}
    columns = [(0, 0)] + [(j + 1, src_index[c]) for j, c in enumerate(dst_alpha) if c in src_index]
    dst_cols, src_cols = (np.array(x) for x in zip(*columns))
    dst_k[:, dst_cols] = src_k[:, src_cols]
    dst_b[dst_cols] = src_b[src_cols]
    dst_head.set_weights([dst_k, dst_b])
    report["copied_layers"].append(output_layer)
    if report["new_chars"] or report["dropped_chars"]:
        log.info(
            "output layer mapped by character: %d shared, new %r, dropped %r",
            len(shared), report["new_chars"], report["dropped_chars"],
        )
    return report
