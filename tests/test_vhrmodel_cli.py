import json

import pytest
from click.testing import CliRunner
from vhrmodel_fixtures import TEXTS, untrained_tiny_model

from vhrdata.store import open_store
from vhrmodel.cli import main
from vhrmodel.presets import build_model


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def model_file(line_store, tmp_path_factory):
    return untrained_tiny_model(line_store, tmp_path_factory.mktemp("cli_model"))


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
    assert f"{out}/history.png" in result.output
    assert "tensorboard --logdir" not in result.output  # --no-tensorboard
    summary = json.loads((out / "train.json").read_text())
    assert summary["preset"] == "tiny" and summary["epochs_run"] == 1
    again = run("train", "--store", line_store, "--out", out, "--fast", "--preset", "tiny")
    assert again.exit_code == 1 and "already holds a run" in again.output and "--resume" in again.output


@pytest.mark.slow
def test_ctrl_c_during_training_says_what_the_run_keeps_and_resume_goes_on(line_store, tmp_path, monkeypatch):
    import vhrmodel.train as train_module

    real_train = train_module.train

    def interrupted_in_epoch_2(*args, callback=None, **kwargs):
        def progress(event):
            callback(event)
            if event["event"] == "batch_end" and event["step"] == 2 and seen_epoch_2:
                raise KeyboardInterrupt
            if event["event"] == "epoch_begin" and event["epoch"] == 2:
                seen_epoch_2.append(True)

        seen_epoch_2 = []
        return real_train(*args, callback=progress, **kwargs)

    monkeypatch.setattr(train_module, "train", interrupted_in_epoch_2)
    out = tmp_path / "run"
    args = ["train", "--store", line_store, "--out", out, "--fast", "--preset", "tiny", "--epochs", "3",
            "--batch-size", "4", "--workers", "0", "--no-augment", "--no-tensorboard", "-q"]
    result = run(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: interrupted: ") and f"{out} keeps epoch 1" in message
    assert "--resume" in message and str(out / "last.keras") in message
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    monkeypatch.setattr(train_module, "train", real_train)
    resumed = run(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "train.json").read_text())["epochs_run"] == 3


def test_ctrl_c_before_the_first_epoch_ended_says_there_is_nothing_to_keep(tmp_path):
    from vhrmodel.config import interrupted_message

    assert interrupted_message(tmp_path).startswith("interrupted before the first epoch ended")


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


def test_augment_config_camera_names_the_camera_effects_and_a_missing_file_is_refused(line_store, tmp_path):
    from vhrmodel.augment import CAMERA_EFFECTS, AugmentConfig
    from vhrmodel.cli.train import _augment_config

    cfg = _augment_config("camera")
    assert cfg == AugmentConfig.with_camera()
    assert all(getattr(cfg, f"p_{name}") > 0 for name in CAMERA_EFFECTS)
    assert all(getattr(AugmentConfig(), f"p_{name}") == 0 for name in CAMERA_EFFECTS)
    result = run("train", "--store", line_store, "--out", tmp_path / "run", "--augment-config", tmp_path / "no.yaml")
    assert result.exit_code == 2
    assert "no.yaml" in result.output and "neither 'camera' nor a file" in result.output
    assert "Traceback" not in result.output


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
    assert all(set(r) == {"path", "text", "confidence", "ms", "chars", "error"} and r["ms"] > 0 for r in rows)
    assert all(r["error"] is None and "".join(c["char"] for c in r["chars"]) == r["text"] for r in rows)
    assert all(0 < c["confidence"] <= 1 and c["x"][0] < c["x"][1] for r in rows for c in r["chars"])


def test_predict_reads_folders_and_quoted_globs_in_sorted_order(model_file, image_paths, tmp_path):
    import shutil

    folder = tmp_path / "lines"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.png", "sub/c.png"):
        shutil.copy(image_paths[0], folder / name)
    (folder / "notes.txt").write_text("not an image")
    by_folder = run("predict", "--model", model_file, folder)
    assert by_folder.exit_code == 0, by_folder.output
    assert [line.split("\t")[0] for line in by_folder.output.splitlines()] == [str(folder / "a.png"), str(folder / "b.png")]
    recursive = run("predict", "--model", model_file, "-r", folder)
    assert [line.split("\t")[0] for line in recursive.output.splitlines()] == [
        str(folder / "a.png"), str(folder / "b.png"), str(folder / "sub" / "c.png")]
    by_glob = run("predict", "--model", model_file, str(folder / "*.png"), folder / "a.png")
    assert by_glob.exit_code == 0, by_glob.output
    assert [line.split("\t")[0] for line in by_glob.output.splitlines()] == [str(folder / "a.png"), str(folder / "b.png")]


def test_predict_reports_a_bad_file_reads_the_rest_and_fails_at_the_end(model_file, image_paths, tmp_path):
    import csv

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    truncated = tmp_path / "truncated.png"
    data = open(image_paths[1], "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    args = [image_paths[0], bad, truncated, tmp_path / "missing.png", image_paths[2]]
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), *map(str, args)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    stdout = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in stdout] == [image_paths[0], image_paths[2]]
    errors = result.stderr.splitlines()
    assert [e.split(": ")[1] for e in errors[:3]] == [str(bad), str(truncated), str(tmp_path / "missing.png")]
    assert "truncated" in errors[1]
    assert errors[-1] == "Error: 3 of 5 images could not be read (see the lines above)"

    out = tmp_path / "r.csv"
    result = run("predict", "--model", model_file, "--out", out, *args)
    assert result.exit_code == 1
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["path"] for r in rows] == [str(a) for a in args]
    assert list(rows[0]) == ["path", "text", "confidence", "ms", "error"]
    assert [bool(r["error"]) for r in rows] == [False, True, True, True, False]
    assert float(rows[0]["confidence"]) > 0 and rows[1]["text"] == "" and rows[1]["confidence"] == ""

    out = tmp_path / "r.jsonl"
    result = run("predict", "--model", model_file, "--out", out, *args)
    objs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [o["path"] for o in objs] == [str(a) for a in args]
    assert objs[0]["error"] is None and "".join(c["char"] for c in objs[0]["chars"]) == objs[0]["text"]
    assert objs[1]["error"] and objs[1]["chars"] == []


def test_predict_escapes_tabs_newlines_and_backslashes_in_names(model_file, image_paths, tmp_path):
    import shutil

    from vhrmodel.cli.predict import escape_field

    odd = tmp_path / "a\tb\\c\nd.png"
    shutil.copy(image_paths[0], odd)
    result = run("predict", "--model", model_file, odd, image_paths[1])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].count("\t") == 1
    assert lines[0].split("\t")[0] == str(tmp_path) + "/a\\tb\\\\c\\nd.png"
    assert escape_field("a\tb\\c\nd\r") == "a\\tb\\\\c\\nd\\r"


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


def test_train_progress_shows_running_loss_validation_and_where_to_look(capsys):
    from vhrmodel.cli.train import EpochBars

    bars = EpochBars("work/run")
    bars({"event": "epoch_begin", "epoch": 1, "epochs": 2, "steps": 4})
    for step in (1, 2):
        bars({"event": "batch_end", "step": step, "steps": 4, "logs": {"loss": 3.25 - step}})
    line = bars.bar.format_progress_line()
    assert "epoch 1/2" in line and "2/4" in line and "loss 1.250" in line
    bars({"event": "val_progress", "done": 3, "total": 8})
    assert bars.bar.label == "validating" and bars.bar.pos == 3 and bars.bar.length == 8
    bars({"event": "val_progress", "done": 8, "total": 8})
    assert bars.bar.pos == 8
    bars({"event": "epoch_end", "epoch": 1, "epochs": 2, "logs": {"loss": 1.0, "val_cer": 0.25}})
    assert bars.bar is None
    out = capsys.readouterr().out
    assert "tensorboard --logdir work/run/tensorboard" in out
    assert "work/run/history.png" in out
    assert "epoch 1/2 · loss 1.000 · val CER 25.00%" in out
    bars({"event": "epoch_begin", "epoch": 2, "epochs": 2, "steps": 4})
    bars.close()
    assert "tensorboard" not in capsys.readouterr().out  # said once, before the first epoch


def test_tensorflow_log_lines_are_dropped_and_the_rest_kept():
    from vhrmodel.quiet import is_tensorflow_noise

    noise = [b"I0000 00:00:1796288952.646055   25013 port.cc:153] oneDNN custom operations are on.",
             b"E0000 00:00:1796288960.1   25013 op_level_cost_estimator.cc:1] DT_BOOL only on platforms with AVX-512",
             b"W0000 00:00:1.5 7 cpu_feature_guard.cc:227] x",
             b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"]
    kept = [b"Error: store work/store does not exist", b"epoch 1/3  [####----]  2/4  loss 1.250",
            b"F0000 00:00:1.5 7 a.cc:3] fatal: kept", b"Warning: something else", b"I0000 is not a log prefix"]
    assert all(is_tensorflow_noise(line) for line in noise)
    assert not any(is_tensorflow_noise(line) for line in kept)


def test_cli_hides_tensorflow_start_up_lines_unless_asked(model_file, image_paths):
    import os
    import re
    import subprocess
    import sys

    absl = re.compile(r"^[IWE]\d{4} |absl::InitializeLog", re.M)
    args = [sys.executable, "-m", "vhrmodel.cli", "predict", "--model", str(model_file), image_paths[0]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "GRPC_", "GLOG_", "VHR_TF"))}
    loud = subprocess.run(args, capture_output=True, text=True, env={**env, "VHR_TF_LOGS": "1"}, timeout=300)
    assert loud.returncode == 0, loud.stderr[-2000:]
    if not absl.search(loud.stderr):
        pytest.skip("this TensorFlow build prints no start-up log lines here")
    quiet = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert absl.findall(quiet.stderr) == []
    assert quiet.stdout == loud.stdout and quiet.stdout.strip()
