import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from vhrmodel_fixtures import TEXTS, build_line_store, untrained_tiny_model

from vhrdata.batching import pad_images
from vhrdata.errors import StoreError
from vhrdata.store import open_store
from vhrmodel.artifact import load_model, model_settings, read_model_info, save_model
from vhrmodel.errors import ModelFileError
from vhrmodel.evaluate import evaluate
from vhrmodel.inputs import to_keras
from vhrmodel.metrics import cer
from vhrmodel.predict import Recognizer
from vhrmodel.presets import build_model


@pytest.fixture(scope="module")
def untrained_model(line_store, tmp_path_factory) -> Path:
    """A tiny model with the store's charset and settings but random weights: every line is wrong."""
    return untrained_tiny_model(line_store, tmp_path_factory.mktemp("untrained"))


def record_paths(line_store) -> dict[str, str]:
    """id -> image path of the store's lines (from the records it was built from)."""
    from vhrdata.records import read_records

    df = read_records(open_store(line_store).index["build"]["records"])
    return dict(zip(df["id"], df["path"]))


def test_predict_prepares_exactly_the_store_tensors(line_store, untrained_model):
    rec = Recognizer(untrained_model)
    paths = record_paths(line_store)
    assert rec.settings == open_store(line_store).settings
    for sample in open_store(line_store).split("test"):
        np.testing.assert_array_equal(rec.prepare(paths[sample.id])[0], sample.image)
        np.testing.assert_array_equal(rec.prepare(Path(paths[sample.id]).read_bytes())[0], sample.image)


def test_saved_and_reloaded_model_predicts_identically(line_store, untrained_model, tmp_path):
    first = load_model(untrained_model)
    again = load_model(save_model(first, tmp_path / "copy.keras"))
    images = [s.image for s in open_store(line_store).split("val")][:5]
    batch, widths = pad_images(images)
    x = {"images": batch[..., None], "widths": widths}
    np.testing.assert_array_equal(np.asarray(first.predict_on_batch(x)), np.asarray(again.predict_on_batch(x)))
    assert again.alphabet == first.alphabet and model_settings(again) == model_settings(first)


def test_recognize_keeps_input_order_and_reports_confidence_and_time(line_store, untrained_model):
    rec = Recognizer(untrained_model)
    paths = list(record_paths(line_store).values())[:6]
    one = rec.recognize(paths, batch_size=1)
    several = rec.recognize(paths, batch_size=4)
    assert [p.source for p in several] == paths
    assert all(0.0 < p.confidence <= 1.0 and p.ms > 0 for p in one)
    # batch invariance: the same texts and confidences whatever the batch
    assert [p.text for p in one] == [p.text for p in several]
    np.testing.assert_allclose([p.confidence for p in one], [p.confidence for p in several], rtol=1e-3, atol=1e-6)
    for p in one:
        assert len(p.chars) == len(p.text)
        assert all(c.x[0] < c.x[1] and 0 <= c.confidence <= 1 for c in p.chars)
        assert [c.frames[0] for c in p.chars] == sorted(c.frames[0] for c in p.chars)


def test_evaluate_reports_exactly_what_predict_returns(line_store, untrained_model, tmp_path):
    m = evaluate(untrained_model, line_store, tmp_path / "eval", split="test", batch_size=5, worst=0)
    lines = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    paths = record_paths(line_store)
    preds = Recognizer(untrained_model).recognize([paths[line["id"]] for line in lines], batch_size=1)
    assert [line["prediction"] for line in lines] == [p.text for p in preds]
    assert m["lines"] == len(lines) and m["cer_ci95"][0] <= m["cer"] <= m["cer_ci95"][1]
    json.loads((tmp_path / "eval" / "metrics.json").read_text())  # valid JSON (no Infinity)
    assert "Infinity" not in (tmp_path / "eval" / "metrics.json").read_text()


def test_decoded_text_is_normalised_as_evaluate_scores_it(untrained_model):
    """A decoder that emits a space at either end or two in a row gives predict the text
    evaluate reports (CI once read 'uế ' in predict and 'uế' in evaluate)."""
    from vhrmodel.decoding import ctc_confidences, log_softmax

    rec = Recognizer(untrained_model)
    c = rec.charset
    a, b = [ch for ch in c.chars if ch != " "][:2]
    path = [c.encode(ch).tolist()[0] if ch != "-" else 0 for ch in f" {a}-  {b} - "]
    logits = np.full((1, len(path), c.num_classes), -5.0, np.float32)
    logits[0, np.arange(len(path)), path] = 5.0
    lengths = np.array([len(path)])
    texts, confs = rec.decode(logits, lengths)
    assert texts == [f"{a} {b}"]
    want = ctc_confidences(log_softmax(logits), [c.encode(f"{a} {b}").tolist()], lengths)[0]
    assert confs[0] == pytest.approx(want)


def test_evaluate_writes_metrics_report_and_worst_lines(line_store, untrained_model, tmp_path):
    out = tmp_path / "eval"
    m = evaluate(untrained_model, line_store, out, split="test", worst=5, batch_size=4)
    assert m["lines"] == len(TEXTS)
    assert m["cer"] > 0.5  # random weights
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("cer", "wer", "ser", "cer_no_diacritics", "per_writer", "ms_per_line_model", "params"):
        assert key in saved
    assert set(saved["per_writer"]) == {"w0", "w1", "w2", "w3"}
    assert "| CER |" in (out / "metrics.md").read_text()
    pngs = sorted((out / "worst").glob("*.png"))
    assert len(pngs) == 5
    listing = (out / "worst" / "index.md").read_text()
    html = (out / "worst" / "index.html").read_text()
    for png in pngs:
        assert png.name in listing and png.name in html
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    worst_cer = sorted((x["cer"] for x in lines), reverse=True)[:5]
    assert f"{100 * worst_cer[0]:.2f} %" in listing.splitlines()[4]  # rank 1 is the worst line


def test_evaluate_refuses_a_store_of_other_preprocessing(untrained_model, tmp_path):
    other = build_line_store(tmp_path, texts=TEXTS[:3], height=40)
    with pytest.raises(StoreError, match="height"):
        evaluate(untrained_model, other, tmp_path / "eval", split="test")


def test_evaluate_refuses_a_missing_split(line_store, untrained_model, tmp_path):
    with pytest.raises(StoreError, match="no 'nope' split|no 'nope' lines"):
        evaluate(untrained_model, line_store, tmp_path / "eval", split="nope")


def test_model_without_charset_is_refused(tmp_path):
    inputs = keras.Input((32, None, 1))
    plain = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ModelFileError, match="lacks its charset and preprocessing"):
        load_model(tmp_path / "plain.keras")
    bare = build_model("tiny", num_classes=4, height=32)
    bare.save(tmp_path / "bare.keras")
    with pytest.raises(ModelFileError, match="charset"):
        Recognizer(tmp_path / "bare.keras")


def test_a_damaged_model_file_is_refused_not_loaded_with_other_weights(untrained_model, tmp_path):
    data = bytearray(untrained_model.read_bytes())
    with zipfile.ZipFile(untrained_model) as zf:
        info = zf.getinfo("model.weights.h5")
    flipped = tmp_path / "flipped.keras"
    data[info.header_offset + 200] ^= 0xFF  # inside the stored weights
    flipped.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged|not a readable"):
        load_model(flipped)
    # the zip rewritten consistently around damaged weights: CRCs pass, the checksum does not
    rewritten = tmp_path / "rewritten.keras"
    with zipfile.ZipFile(untrained_model) as src, zipfile.ZipFile(rewritten, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "model.weights.h5":
                payload = payload[:-64] + bytes(64)
            dst.writestr(item, payload)
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(rewritten)
    (tmp_path / "trunc.keras").write_bytes(untrained_model.read_bytes()[:1000])
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "trunc.keras")


def test_unreadable_model_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a readable Keras model archive"):
        read_model_info(tmp_path / "junk.keras")
    with pytest.raises(ModelFileError, match="is a folder"):
        load_model(tmp_path)


def test_model_file_carries_charset_and_settings(line_store, untrained_model):
    info = read_model_info(untrained_model)
    store = open_store(line_store)
    assert info["alphabet"] == store.alphabet
    assert info["preprocessing"] == store.settings.to_dict()
    assert "config.json" in zipfile.ZipFile(untrained_model).namelist()


@pytest.mark.slow
def test_trained_model_reads_its_lines_from_the_image_files(line_store, trained_run, tmp_path):
    run, _ = trained_run
    paths = record_paths(line_store)
    test_ids = [s.id for s in open_store(line_store).split("test")]
    truths = [s.text for s in open_store(line_store).split("test")]
    preds = Recognizer(run / "model.keras").recognize([paths[i] for i in test_ids])
    assert cer(truths, [p.text for p in preds]) < 0.05
    m = evaluate(run / "model.keras", line_store, tmp_path / "eval", split="test", decoder="beam", beam_width=4)
    assert m["cer"] < 0.05 and m["decoder"] == "beam"


@pytest.mark.slow
def test_best_model_is_saved_without_optimizer_state(line_store, tmp_path):
    from vhrmodel.losses import CTCLoss

    store = open_store(line_store)
    model = build_model("tiny", alphabet=store.alphabet, preprocessing=store.settings.to_dict())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=CTCLoss())
    b = next(store.split("train").batches(4, shuffle=False))
    x, y = to_keras(b)
    model.train_on_batch(x, y)
    full = save_model(model, tmp_path / "full.keras")
    lean = save_model(model, tmp_path / "lean.keras", include_optimizer=False)
    assert lean.stat().st_size < full.stat().st_size
    np.testing.assert_array_equal(np.asarray(model.predict_on_batch(x)),
                                  np.asarray(load_model(lean).predict_on_batch(x)))
    assert load_model(full, compile=True).optimizer is not None
