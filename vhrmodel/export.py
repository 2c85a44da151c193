"""Exported models: `vhrmodel export` writes them, `open_exported` reads them back as a `Runtime`.

An export is a folder with the artifact and `vhr-model.json`, which describes it:

- `format` (`saved_model`, `litert` or `onnx`), `runtime`, `quantization` (`none`, `dynamic`,
  `int8`) and the artifact's file name and sha256 (checked when the folder is opened);
- `alphabet`, `preprocessing` and its hash, `downsample`, `height`, `num_classes`;
- `input_signature`: images uint8 [batch, height, width, 1] and widths int32 [batch], with the
  height fixed and the width free (null); `batch` is null except for LiteRT (below);
- `source`: the file name, sha256 and weights sha256 of the `.keras` file it came from.

Every format keeps the width free: a 300 px line and a 2,000 px line go through the same
artifact. LiteRT's converter lowers the LSTM loops only with a static batch, so a LiteRT
artifact has a fixed batch (1 by default) and `LiteRTRuntime` runs a batch in chunks of that
size, each chunk cropped to its own widest line. The model is batch- and padding-invariant
(`vhrmodel.model.CRNN`), so a line's logits do not depend on its chunk, and the frames past a
chunk's width are the same certain blanks the model emits for padding.

Artifacts are written with Keras 3's own `Model.export` (which uses tf2onnx and the TF LiteRT
converter); dynamic ONNX quantisation uses `onnxruntime.quantization`. The export graph uses
the plain LSTM kernel (`use_cudnn=False`; keras #21799: tf2onnx cannot convert the cuDNN op).

Reading an export needs only numpy and its own runtime (`ai-edge-litert`, `onnxruntime`, or
TensorFlow for `saved_model`): this module imports neither TensorFlow nor Keras at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vhrmodel.errors import ExportError, ModelFileError
from vhrmodel.extras import import_failed, require, require_keras, require_lite
from vhrmodel.runtime import BLANK_MARGIN, blank_frames

MANIFEST = "vhr-model.json"
EXPORT_VERSION = 1
FORMATS = ("saved_model", "litert", "onnx")
QUANTIZATIONS = ("none", "dynamic", "int8")
ARTIFACTS = {"saved_model": "saved_model", "litert": "model.tflite", "onnx": "model.onnx"}
RUNTIMES = {"saved_model": "tensorflow", "litert": "ai-edge-litert", "onnx": "onnxruntime"}
# Which quantisations each format offers.
SUPPORTED = {"saved_model": ("none",), "litert": ("none", "dynamic", "int8"), "onnx": ("none", "dynamic")}


# ---------------------------------------------------------------- hashes and manifest


def artifact_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder (every file's relative path and sha256, in sorted order)."""
    from vhrmodel.artifact import file_sha256

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def _artifact_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def read_manifest(folder: str | Path, verify: bool = True) -> dict[str, Any]:
    """The `vhr-model.json` of an export folder, checked: fields, format, artifact and its sha256.

    Raises:
        ModelFileError: no manifest, an unreadable one, a missing artifact, or an artifact whose
            sha256 is not the one recorded (a damaged or replaced export).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ModelFileError(f"{folder} is not an export folder (written by `vhrmodel export`)")
    if not path.is_file():
        raise ModelFileError(f"{folder} has no {MANIFEST}; it is not an export written by `vhrmodel export` "
                             "(pass a .keras file or an export folder)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as ex:
        raise ModelFileError(f"{path} is not readable JSON ({ex}); export the model again") from None
    needed = ("export_version", "format", "quantization", "artifact", "artifact_sha256", "alphabet",
              "preprocessing", "downsample", "height", "input_signature")
    missing = [k for k in needed if k not in info] if isinstance(info, dict) else list(needed)
    if missing:
        raise ModelFileError(f"{path} lacks {', '.join(missing)}; export the model again with this vhr")
    if info["export_version"] != EXPORT_VERSION:
        raise ModelFileError(f"{path} is export format {info['export_version']}; this vhr reads {EXPORT_VERSION}: "
                             "export the model again")
    if info["format"] not in FORMATS:
        raise ModelFileError(f"{path} names format {info['format']!r}; this vhr reads {', '.join(FORMATS)}")
    artifact = folder / str(info["artifact"])
    if Path(str(info["artifact"])).name != str(info["artifact"]) or not artifact.exists():
        raise ModelFileError(f"{folder} lacks its artifact {info['artifact']!r}; copy the whole folder again")
    if verify:
        actual = artifact_sha256(artifact)
        if actual != info["artifact_sha256"]:
            raise ModelFileError(f"{artifact} is damaged: its sha256 is not the one recorded in {MANIFEST}; "
                                 "copy the export again or export the model again")
    return info


# ---------------------------------------------------------------- runtimes


class _ExportedRuntime:
    """What the exported runtimes share: the manifest's fields and a blank-frame padding rule."""

    name = "exported"

    def __init__(self, folder: Path, info: dict[str, Any]):
        self.folder = folder
        self.info = info
        self.alphabet = str(info["alphabet"])
        self.preprocessing = dict(info["preprocessing"])
        self.downsample = int(info["downsample"])
        self.height = int(info["height"])
        self.num_classes = int(info.get("num_classes") or len(self.alphabet) + 1)
        self.blank_margin = float(info.get("blank_margin", BLANK_MARGIN))
        self.format = info["format"]
        self.quantization = info["quantization"]
        self.artifact = folder / info["artifact"]

    def _check(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1] != self.height:
            raise ValueError(f"images must be uint8 [B, {self.height}, W]. Received: shape={images.shape}")
        return np.ascontiguousarray(images, np.uint8), np.asarray(widths, np.int32).reshape(-1)

    def _blank_frames(self, n: int, frames: int) -> np.ndarray:
        return blank_frames(n, frames, self.num_classes, self.blank_margin)


class OnnxRuntime(_ExportedRuntime):
    """An ONNX export on ONNX Runtime (CPU); batch and width free."""

    name = "onnxruntime"

    def __init__(self, folder: Path, info: dict[str, Any], threads: int | None = None):
        super().__init__(folder, info)
        purpose = f"{folder} (an ONNX export)"
        require_lite("onnx", purpose)
        try:
            import onnxruntime as ort
        except ImportError as ex:
            raise import_failed("onnxruntime", "lite", purpose, ex) from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: in a server the event loop and the
        # image decoding threads need those cores between model calls.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.artifact), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as ex:  # onnxruntime raises its own exception types for a bad file
            raise ModelFileError(f"onnxruntime cannot load {self.artifact}: {str(ex).splitlines()[0]}") from None
        self.output = self.session.get_outputs()[0].name

    def logits(self, images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        images, widths = self._check(images, widths)
        out = self.session.run([self.output], {"images": images[..., None], "widths": widths})[0]
        return np.asarray(out, np.float32)


class LiteRTRuntime(_ExportedRuntime):
    """A LiteRT (.tflite) export on `ai_edge_litert.interpreter` (XNNPACK on CPU).

    The artifact has a fixed batch (`input_signature.batch`, see the module docstring); lines
    are run in chunks of that size, each cropped to its widest line's own width and padded back
    with blank frames. The input tensors are resized per call, so the width stays free.
    """

    name = "litert"

    def __init__(self, folder: Path, info: dict[str, Any], threads: int | None = None):
        super().__init__(folder, info)
        purpose = f"{folder} (a LiteRT export)"
        require_lite("litert", purpose)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as ex:
            raise import_failed("ai_edge_litert", "lite", purpose, ex) from None
        try:
            self.interpreter = Interpreter(model_path=str(self.artifact), num_threads=threads or None)
        except Exception as ex:
            raise ModelFileError(f"LiteRT cannot load {self.artifact}: {str(ex).splitlines()[0]}") from None
        self.batch = int(info["input_signature"].get("batch") or 1)
        details = self.interpreter.get_input_details()
        self._inputs = {}
        for d in details:
            key = "widths" if "widths" in d["name"] else "images"
            self._inputs[key] = d["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None
        self._lock = threading.Lock()

    def _run(self, images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        x = images[..., None]
        it = self.interpreter
        if self._shape != x.shape:
            it.resize_tensor_input(self._inputs["images"], list(x.shape))
            it.resize_tensor_input(self._inputs["widths"], [x.shape[0]])
            it.allocate_tensors()
            self._shape = x.shape
        it.set_tensor(self._inputs["images"], x)
        it.set_tensor(self._inputs["widths"], widths)
        it.invoke()
        return np.array(it.get_tensor(self._output), np.float32)

    def logits(self, images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        from vhrdata.batching import round_up
        from vhrdata.preprocess import PAD_VALUE

        images, widths = self._check(images, widths)
        n, _, w = images.shape
        frames = w // self.downsample
        out = self._blank_frames(n, frames)
        with self._lock:
            for start in range(0, n, self.batch):
                chunk_w = widths[start : start + self.batch]
                own = int(min(w, round_up(max(int(chunk_w.max()), self.downsample), self.downsample)))
                chunk = images[start : start + self.batch, :, :own]
                if own > w:  # a line narrower than one frame: pad it to one frame
                    chunk = np.pad(chunk, ((0, 0), (0, 0), (0, own - w)), constant_values=PAD_VALUE)
                k = chunk.shape[0]
                if k < self.batch:  # the last chunk: fill the fixed batch with blank lines
                    chunk = np.concatenate([chunk, np.full((self.batch - k,) + chunk.shape[1:], PAD_VALUE, np.uint8)])
                    chunk_w = np.concatenate([chunk_w, np.full(self.batch - k, self.downsample, np.int32)])
                got = self._run(np.ascontiguousarray(chunk), np.ascontiguousarray(chunk_w, np.int32))[:k]
                t = min(frames, got.shape[1])
                out[start : start + k, :t] = got[:, :t]
        return out


class SavedModelRuntime(_ExportedRuntime):
    """A TensorFlow SavedModel export (`tf.saved_model.load`, endpoint `serve`); batch and width free."""

    name = "tensorflow"

    def __init__(self, folder: Path, info: dict[str, Any], threads: int | None = None):
        super().__init__(folder, info)
        purpose = f"{folder} (a TensorFlow SavedModel export)"
        light = "or export the model as onnx or litert for a light install"
        require(["tensorflow"], "train", purpose, note=light)
        try:
            import tensorflow as tf
        except ImportError as ex:
            raise import_failed("tensorflow", "train", purpose, ex) from None
        self._tf = tf
        try:
            self.module = tf.saved_model.load(str(self.artifact))
        except Exception as ex:
            raise ModelFileError(f"TensorFlow cannot load {self.artifact}: {str(ex).splitlines()[0]}") from None

    def logits(self, images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        images, widths = self._check(images, widths)
        tf = self._tf
        out = self.module.serve({"images": tf.constant(images[..., None]), "widths": tf.constant(widths)})
        return np.asarray(out, np.float32)


RUNTIME_CLASSES = {"onnx": OnnxRuntime, "litert": LiteRTRuntime, "saved_model": SavedModelRuntime}


def open_exported(folder: str | Path, threads: int | None = None):
    """The `Runtime` of an export folder, chosen by its `vhr-model.json`; the artifact is checked first.

    Args:
        folder: a folder written by `export_model` / `vhrmodel export`.
        threads: CPU threads the runtime may use (None = the runtime's default).

    Raises:
        ModelFileError: see `read_manifest`, or the format's runtime cannot load the artifact.
        MissingDependencyError: the format's runtime is not installed (onnxruntime, ai-edge-litert:
            `pip install 'vhr[lite]'`; TensorFlow: `pip install 'vhr[train]'`).
    """
    folder = Path(folder)
    info = read_manifest(folder)
    return RUNTIME_CLASSES[info["format"]](folder, info, threads=threads)


# ---------------------------------------------------------------- export


def _export_model(model):
    """An inference copy of `model` whose LSTMs use the plain kernel (keras #21799)."""
    twin = model.__class__.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    for layer in twin._flatten_layers(include_self=False, recursive=True):
        if hasattr(layer, "use_cudnn"):
            layer.use_cudnn = False
    return twin


def _signature(height: int, batch: int | None):
    import tensorflow as tf

    return [{"images": tf.TensorSpec((batch, height, None, 1), tf.uint8, name="images"),
             "widths": tf.TensorSpec((batch,), tf.int32, name="widths")}]


def calibration_batches(store: str | Path, split: str, lines: int, batch: int, height: int,
                        downsample: int) -> Callable[[], Any]:
    """A representative dataset for int8: up to `lines` lines of a store split, `batch` at a time.

    Raises:
        ExportError: the split is empty or its height is not the model's.
    """
    from vhrdata.batching import pad_images
    from vhrdata.store import open_store

    try:
        ds = open_store(store).split(split)
    except Exception as ex:
        raise ExportError(f"cannot read calibration split {split!r} of {store}: {ex}") from None
    n = min(len(ds), int(lines))
    if n == 0:
        raise ExportError(f"calibration split {split!r} of {store} is empty; pass --calibration-split")
    images = [ds[i].image for i in range(n)]
    if images[0].shape[0] != height:
        raise ExportError(f"calibration store {store} holds lines of height {images[0].shape[0]}, the model "
                          f"reads {height}; use the store the model was trained on")
    while len(images) % batch:
        images.append(images[len(images) % n])

    def gen():
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            padded, widths = pad_images(chunk)
            w = max(downsample, padded.shape[2] - padded.shape[2] % downsample)
            yield {"images": padded[:, :, :w, None].astype(np.uint8), "widths": np.minimum(widths, w).astype(np.int32)}

    return gen


def export_model(
    model_path: str | Path,
    out: str | Path,
    format: str = "onnx",
    quantize: str = "none",
    calibration: str | Path | None = None,
    calibration_split: str = "train",
    calibration_lines: int = 64,
    batch: int = 1,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a `.keras` model file to `out/` as `format`, with `vhr-model.json` beside it.

    Args:
        model_path: a model file written by `vhrmodel train` (checked before export).
        out: the export folder; it must not exist or be empty, unless `overwrite`.
        format: "saved_model", "litert" or "onnx".
        quantize: "none", "dynamic" (int8 weights; litert, onnx) or "int8" (int8 weights and
            activations calibrated on `calibration`; litert).
        calibration: a store whose `calibration_split` gives the representative lines for int8.
        calibration_lines: lines used for calibration.
        batch: the fixed batch of a LiteRT artifact (ignored by the other formats, whose batch is free).
        overwrite: replace an existing export in `out`.

    Returns:
        The manifest (also written to `out/vhr-model.json`), plus "path" and "size_bytes".

    Raises:
        ModelFileError: the model file is missing or damaged.
        ExportError: a bad combination of options, an `out` that holds other files, or a
            converter failure.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantisation {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if quantize not in SUPPORTED[format]:
        raise ExportError(f"{format} exports support --quantize {'/'.join(SUPPORTED[format])}, not {quantize}")
    if quantize == "int8" and calibration is None:
        raise ExportError("--quantize int8 needs --calibration STORE (a store split gives the representative lines)")
    if int(batch) < 1:
        raise ExportError(f"batch must be positive. Received: batch={batch}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; --out takes a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} is not empty; pass --force to replace the export there, or choose another --out")
        if not (out / MANIFEST).is_file():
            raise ExportError(f"{out} holds files that are not an export; refusing to replace them")

    require_keras("exporting a model", training=True)
    from vhrmodel.artifact import file_sha256, load_model, verify_model_file
    from vhrdata.preprocess import PreprocessSettings

    model_path = Path(model_path)
    model_info = verify_model_file(model_path)
    source_sha = file_sha256(model_path)
    model = load_model(model_path)
    twin = _export_model(model)
    height, downsample = int(model.height), int(model.downsample)
    num_classes = len(model.alphabet) + 1
    try:
        margin = float(model.get_layer("blank_padding").margin)
    except (ValueError, AttributeError):
        margin = BLANK_MARGIN
    fixed_batch = int(batch) if format == "litert" else None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    artifact = tmp / ARTIFACTS[format]
    try:
        sig = _signature(height, fixed_batch)
        try:
            if format == "saved_model":
                twin.export(str(artifact), format="tf_saved_model", input_signature=sig, verbose=False)
            elif format == "onnx":
                if quantize == "none":
                    twin.export(str(artifact), format="onnx", input_signature=sig, verbose=False)
                else:
                    from onnxruntime.quantization import QuantType, quantize_dynamic

                    float_path = tmp / "float.onnx"
                    twin.export(str(float_path), format="onnx", input_signature=sig, verbose=False)
                    quantize_dynamic(str(float_path), str(artifact), weight_type=QuantType.QInt8)
                    float_path.unlink()
            else:
                import tensorflow as tf

                kwargs: dict[str, Any] = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
                if quantize != "none":
                    kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
                if quantize == "int8":
                    kwargs["representative_dataset"] = calibration_batches(
                        calibration, calibration_split, calibration_lines, fixed_batch, height, downsample)
                twin.export(str(artifact), format="litert", input_signature=sig, verbose=False, **kwargs)
        except ExportError:
            raise
        except Exception as ex:  # the converters raise many types
            first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
            raise ExportError(f"cannot export {model_path} as {format} ({quantize}): {first}") from None
        settings = PreprocessSettings.from_dict(dict(model.preprocessing))
        import keras

        info = {
            "export_version": EXPORT_VERSION,
            "format": format,
            "runtime": RUNTIMES[format],
            "quantization": quantize,
            "artifact": ARTIFACTS[format],
            "artifact_sha256": artifact_sha256(artifact),
            "alphabet": model.alphabet,
            "preprocessing": dict(model.preprocessing),
            "preprocessing_hash": settings.hash(),
            "downsample": downsample,
            "height": height,
            "num_classes": num_classes,
            "blank_margin": margin,
            "input_signature": {
                "batch": fixed_batch,
                "images": {"dtype": "uint8", "shape": [fixed_batch, height, None, 1]},
                "widths": {"dtype": "int32", "shape": [fixed_batch]},
                "logits": {"dtype": "float32", "shape": [fixed_batch, None, num_classes]},
                "width_free": True,
                "note": ("batch fixed by the LiteRT converter; the runtime runs lines in chunks of this size"
                         if fixed_batch else "batch and width free"),
            },
            "calibration": ({"store": str(calibration), "split": calibration_split, "lines": int(calibration_lines)}
                            if quantize == "int8" else None),
            "source": {"file": model_path.name, "sha256": source_sha, "weights_sha256": model_info["weights_sha256"]},
            "model_id": f"{source_sha[:12]}-{format}-{quantize}",
            "keras_version": keras.__version__,
        }
        (tmp / MANIFEST).write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {**info, "path": str(out / ARTIFACTS[format]), "size_bytes": _artifact_size(out / ARTIFACTS[format])}
