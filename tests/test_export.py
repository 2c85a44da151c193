"""`vhrmodel export` and the exported runtimes: parity with Keras, free widths, self-checks."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from vhrmodel_fixtures import TEXTS

from vhrmodel.errors import ExportError, ModelFileError
from vhrmodel.metrics import cer
from vhrmodel.predict import Recognizer
from vhrmodel.runtime import batch_logits

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[lite]')")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install '.[export]')")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install '.[lite]')")

EXPORTS = {  # name: (format, quantize)
    "onnx": ("onnx", "none"),
    "litert": ("litert", "none"),
    "saved_model": ("saved_model", "none"),
    "litert-int8": ("litert", "int8"),
    "litert-dynamic": ("litert", "dynamic"),
    "onnx-dynamic": ("onnx", "dynamic"),
}
FLOAT = ["onnx", "litert", "saved_model"]
QUANTISED = ["litert-int8", "litert-dynamic", "onnx-dynamic"]


@pytest.fixture(scope="module")
def model_path(trained_run) -> Path:
    return trained_run[0] / "model.keras"


@pytest.fixture(scope="module")
def exports(model_path, line_store, tmp_path_factory) -> dict[str, Path]:
    from vhrmodel.export import export_model

    root = tmp_path_factory.mktemp("exports")
    out = {}
    for name, (fmt, quant) in EXPORTS.items():
        export_model(model_path, root / name, format=fmt, quantize=quant,
                     calibration=line_store if quant == "int8" else None)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def line_files(line_store) -> list[str]:
    from vhrdata.records import read_records
    from vhrdata.store import open_store

    df = read_records(open_store(line_store).index["build"]["records"])
    df = df[df["split"] == "train"].sort_values("id")
    assert list(df["text"]) == TEXTS
    return list(df["path"])


@pytest.fixture(scope="module")
def keras_reference(model_path, line_files):
    """The Keras model's prepared lines (several widths, plus a 300 px and a 2,000 px line) and logits."""
    rec = Recognizer(model_path)
    prepared = [rec.prepare(p)[0] for p in line_files]
    h = prepared[0].shape[0]
    line = prepared[2]
    short = np.full((h, 300), 255, np.uint8)
    short[:, : min(300, line.shape[1])] = line[:, :300]
    wide = np.tile(line, (1, 2000 // line.shape[1] + 1))[:, :2000]
    prepared += [short, wide]
    logits, lengths = batch_logits(rec.runtime, prepared)
    texts = [p.text for p in rec.recognize(line_files)]
    return prepared, logits, lengths, texts


def test_manifest_describes_the_export(exports, model_path):
    from vhrmodel.artifact import file_sha256
    from vhrmodel.export import MANIFEST, artifact_sha256
    from vhrdata.preprocess import PreprocessSettings

    for name, folder in exports.items():
        info = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        fmt, quant = EXPORTS[name]
        assert (info["format"], info["quantization"]) == (fmt, quant)
        assert info["source"]["sha256"] == file_sha256(model_path)
        assert info["artifact_sha256"] == artifact_sha256(folder / info["artifact"])
        assert info["alphabet"] and info["downsample"] == 4 and info["height"] == 32
        assert info["preprocessing_hash"] == PreprocessSettings.from_dict(info["preprocessing"]).hash()
        images = info["input_signature"]["images"]
        assert images["dtype"] == "uint8" and images["shape"][1:] == [32, None, 1]  # height fixed, width free
        assert info["input_signature"]["batch"] == (1 if fmt == "litert" else None)


@pytest.mark.parametrize("name", FLOAT)
def test_float_exports_match_keras_logits_and_text(name, exports, keras_reference, line_files):
    prepared, ref_logits, ref_lengths, ref_texts = keras_reference
    rec = Recognizer(exports[name])
    assert rec.runtime.name != "keras"
    logits, lengths = batch_logits(rec.runtime, prepared)
    assert logits.shape == ref_logits.shape
    np.testing.assert_array_equal(lengths, ref_lengths)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-3, rtol=0)
    assert [p.text for p in rec.recognize(line_files, batch_size=5)] == ref_texts


@pytest.mark.parametrize("name", ["onnx", "litert"])
def test_a_300_and_a_2000_px_line_go_through_one_artifact(name, exports, keras_reference):
    prepared, ref_logits, _, _ = keras_reference
    short, wide = prepared[-2:]
    rec = Recognizer(exports[name])
    for line in (short, wide, short):  # the LiteRT tensors are resized back and forth
        logits, lengths = batch_logits(rec.runtime, [line])
        assert logits.shape[1] == line.shape[1] // 4
        ref = ref_logits[-2 if line is short else -1]
        np.testing.assert_allclose(logits[0, : lengths[0]], ref[: lengths[0]], atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", QUANTISED)
def test_quantised_exports_keep_cer_within_one_point(name, exports, line_files):
    float_texts = [p.text for p in Recognizer(exports["litert"]).recognize(line_files)]
    texts = [p.text for p in Recognizer(exports[name]).recognize(line_files, batch_size=4)]
    assert abs(cer(TEXTS, texts) - cer(TEXTS, float_texts)) <= 0.01


def test_quantised_litert_is_smaller(exports):
    size = lambda n: (exports[n] / "model.tflite").stat().st_size  # noqa: E731
    assert size("litert-int8") < size("litert") and size("litert-dynamic") < size("litert")


def test_per_character_output_from_an_export(exports, line_files):
    p = Recognizer(exports["onnx"]).recognize(line_files[:1])[0]
    assert len(p.chars) == len(p.text) > 0
    xs = [c.x for c in p.chars]
    assert all(0 <= x0 < x1 for x0, x1 in xs) and xs == sorted(xs)
    assert all(0 < c.confidence <= 1 for c in p.chars)


def test_a_damaged_artifact_is_refused_when_opened(exports, tmp_path):
    import shutil

    for name, artifact in (("onnx", "model.onnx"), ("litert", "model.tflite")):
        folder = tmp_path / name
        shutil.copytree(exports[name], folder)
        data = bytearray((folder / artifact).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / artifact).write_bytes(bytes(data))
        with pytest.raises(ModelFileError, match="damaged"):
            Recognizer(folder)
    folder = tmp_path / "sm"
    shutil.copytree(exports["saved_model"], folder)
    (folder / "saved_model" / "extra.txt").write_text("x")
    with pytest.raises(ModelFileError, match="damaged"):
        Recognizer(folder)


def test_a_folder_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="vhr-model.json"):
        Recognizer(tmp_path)
    (tmp_path / "vhr-model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="JSON"):
        Recognizer(tmp_path)


def test_bad_export_options_are_export_errors(model_path, exports, tmp_path):
    from vhrmodel.export import export_model

    with pytest.raises(ExportError, match="saved_model exports support"):
        export_model(model_path, tmp_path / "a", format="saved_model", quantize="int8")
    with pytest.raises(ExportError, match="--calibration"):
        export_model(model_path, tmp_path / "b", format="litert", quantize="int8")
    with pytest.raises(ExportError, match="not empty"):
        export_model(model_path, exports["onnx"], format="onnx")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an export"):
        export_model(model_path, tmp_path / "other", format="onnx", overwrite=True)
    with pytest.raises(ModelFileError):
        export_model(tmp_path / "missing.keras", tmp_path / "c", format="onnx")


def test_cli_export_and_predict_with_the_export(model_path, line_files, tmp_path):
    from vhrmodel.cli import main

    out = tmp_path / "cli-onnx"
    result = CliRunner().invoke(main, ["export", "--model", str(model_path), "--out", str(out), "--format", "onnx",
                                       "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.strip().splitlines()[-1])
    assert info["format"] == "onnx" and Path(info["path"]).is_file()
    result = CliRunner().invoke(main, ["predict", "--model", str(out), line_files[0]])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == TEXTS[0]
    again = CliRunner().invoke(main, ["export", "--model", str(model_path), "--out", str(out)])
    assert again.exit_code != 0 and "--force" in again.output and "Traceback" not in again.output
