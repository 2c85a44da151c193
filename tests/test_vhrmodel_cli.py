import json

import pytest
from click.testing import CliRunner
from vhrmodel_fixtures import TEXTS

from vhrdata.store import open_store
from vhrmodel.artifact import save_model
from vhrmodel.cli import main
from vhrmodel.presets import build_model


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def model_file(line_store, tmp_path_factory):
    store = open_store(line_store)
    model = build_model("tiny", alphabet=store.alphabet, preprocessing=store.settings.to_dict())
    return save_model(model, tmp_path_factory.mktemp("cli_model") / "model.keras")


@pytest.fixture(scope="module")
def image_paths(line_store):
    from vhrdata.records import read_records

    df = read_records(open_store(line_store).index["build"]["records"])
    return list(df[df["split"] == "test"]["path"])


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"vhrmodel {command}" in result.output


@pytest.mark.slow
def test_train_writes_a_run(line_store, tmp_path):
    out = tmp_path / "run"
    result = run("train", "--store", line_store, "--out", out, "--fast", "--preset", "tiny", "--epochs", "1",
                 "--batch-size", "8", "--workers", "0", "--no-augment", "--no-tensorboard", "-q")
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output and "val CER" in result.output
    assert f"wrote {out}/model.keras" in result.output
    summary = json.loads((out / "train.json").read_text())
    assert summary["preset"] == "tiny" and summary["epochs_run"] == 1
    again = run("train", "--store", line_store, "--out", out, "--fast", "--preset", "tiny")
    assert again.exit_code == 1 and "already holds a run" in again.output and "--resume" in again.output


def test_train_missing_store_is_a_clear_error(tmp_path):
    result = run("train", "--store", tmp_path / "nowhere", "--out", tmp_path / "run", "--fast")
    assert result.exit_code == 1
    assert "Error:" in result.output and "nowhere" in result.output
    assert "Traceback" not in result.output


def test_train_rejects_a_bad_augment_config(line_store, tmp_path):
    cfg = tmp_path / "aug.yaml"
    cfg.write_text("p_nosie: 0.5\n")
    result = run("train", "--store", line_store, "--out", tmp_path / "run", "--augment-config", cfg)
    assert result.exit_code == 2
    assert "p_nosie" in result.output


def test_evaluate_writes_reports(line_store, model_file, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", "--model", model_file, "--store", line_store, "--split", "val", "--out", out,
                 "--worst", "3")
    assert result.exit_code == 0, result.output
    assert f"{len(TEXTS)} lines" in result.output and "CER" in result.output
    assert json.loads((out / "metrics.json").read_text())["split"] == "val"
    assert len(list((out / "worst").glob("*.png"))) == 3


def test_evaluate_lm_needs_beam(line_store, model_file, tmp_path):
    from vhrmodel.decoding import CharNgramLM

    lm = tmp_path / "lm.json"
    lm.write_text(CharNgramLM(order=3).fit(TEXTS).to_json())
    result = run("evaluate", "--model", model_file, "--store", line_store, "--out", tmp_path / "e", "--lm", lm)
    assert result.exit_code == 2 and "--decoder beam" in result.output
    result = run("evaluate", "--model", model_file, "--store", line_store, "--out", tmp_path / "e", "--lm", lm,
                 "--decoder", "beam", "--beam-width", "3")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["lm"] is True


def test_evaluate_unknown_split_is_a_clear_error(line_store, model_file, tmp_path):
    result = run("evaluate", "--model", model_file, "--store", line_store, "--split", "dev", "--out", tmp_path / "e")
    assert result.exit_code == 1 and "'dev'" in result.output and "Traceback" not in result.output


def test_predict_prints_text_and_json(model_file, image_paths):
    one = run("predict", "--model", model_file, image_paths[0])
    assert one.exit_code == 0, one.output
    assert len(one.output.splitlines()) == 1 and "\t" not in one.output

    several = run("predict", "--model", model_file, *image_paths[:3])
    assert several.exit_code == 0
    assert [line.split("\t")[0] for line in several.output.splitlines()] == image_paths[:3]

    as_json = run("predict", "--model", model_file, "--json", "--batch-size", "2", *image_paths[:3])
    assert as_json.exit_code == 0
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert [r["path"] for r in rows] == image_paths[:3]
    assert all(set(r) == {"path", "text", "confidence", "ms"} and r["ms"] > 0 for r in rows)


def test_predict_refuses_a_model_without_charset(image_paths, tmp_path):
    bare = build_model("tiny", num_classes=4, height=32)
    bare.save(tmp_path / "bare.keras")
    result = run("predict", "--model", tmp_path / "bare.keras", image_paths[0])
    assert result.exit_code == 1
    assert "lacks its charset" in result.output and "Traceback" not in result.output


def test_predict_missing_model_is_a_clear_error(image_paths, tmp_path):
    result = run("predict", "--model", tmp_path / "none.keras", image_paths[0])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_predict_unreadable_image_is_a_clear_error(model_file, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = run("predict", "--model", model_file, bad)
    assert result.exit_code == 1 and "bad.png" in result.output and "Traceback" not in result.output


def test_help_does_not_load_keras():
    import subprocess
    import sys

    code = "import sys, vhrmodel.cli; print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
