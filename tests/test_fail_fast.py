"""Mistakes in a `vhrmodel` command line are refused in a second, before Keras is imported.

Each case runs the real CLI in a fresh interpreter and checks, after it exits, that `keras`
(and TensorFlow) never entered `sys.modules`, that the exit status is non-zero and that the
user sees exactly one line: the `Error: …` message, no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vhrmodel_fixtures import TEXTS, build_line_store

# Runs the CLI as the `vhrmodel` script does, then reports which heavy modules were imported.
RUNNER = """
import sys
from vhrmodel.cli import main
try:
    main(sys.argv[1:], prog_name="vhrmodel")
    code = 0
except SystemExit as ex:
    code = ex.code
sys.stdout.flush()
sys.stderr.flush()
print("LOADED=" + ",".join(m for m in ("keras", "tensorflow", "jax") if m in sys.modules), file=sys.__stdout__)
sys.exit(code)
"""


def run_cli(*args) -> tuple[int, list[str], list[str], str]:
    """(exit status, stdout lines without the probe line, stderr lines, heavy modules loaded)."""
    proc = subprocess.run([sys.executable, "-c", RUNNER, *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout.splitlines()
    probe = [line for line in out if line.startswith("LOADED=")]
    assert probe, f"the CLI did not return: {proc.stderr[-2000:]}"
    return proc.returncode, [line for line in out if not line.startswith("LOADED=")], proc.stderr.splitlines(), \
        probe[-1][len("LOADED="):]


def assert_fast_failure(args, *needles, status=None):
    code, out, err, loaded = run_cli(*args)
    assert code != 0 if status is None else code == status, (code, out, err)
    assert loaded == "", f"{args[0]} imported {loaded} before refusing"
    assert out == []
    assert len(err) == 1, err
    assert err[0].startswith("Error: ") and "Traceback" not in err[0]
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


@pytest.fixture(scope="module")
def no_val_store(tmp_path_factory) -> Path:
    return build_line_store(tmp_path_factory.mktemp("no_val"), TEXTS[:4], val_copies=False)


@pytest.fixture(scope="module")
def lm_file(tmp_path_factory) -> Path:
    from vhrmodel.decoding import CharNgramLM

    path = tmp_path_factory.mktemp("lm") / "charlm.json"
    path.write_text(CharNgramLM(order=3).fit(TEXTS).to_json(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory) -> Path:
    """A file that exists where a model is expected (the checks only ask whether it is there)."""
    path = tmp_path_factory.mktemp("model") / "model.keras"
    path.write_bytes(b"not opened: every case fails before the model is loaded")
    return path


def test_train_refuses_a_run_folder_that_holds_a_run(line_store, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.keras").write_bytes(b"")
    assert_fast_failure(["train", "--store", line_store, "--out", run], "already holds a run", "--resume", status=1)


def test_train_refuses_resume_without_a_run(line_store, tmp_path):
    assert_fast_failure(["train", "--store", line_store, "--out", tmp_path / "new", "--resume"], "nothing to resume")


def _run_to_resume(run: Path, store: Path, alphabet: str | None = None, height: int | None = None,
                   state: str | None = None) -> Path:
    """A run folder whose last.keras holds only what the resume check reads: its config and checksum stamp."""
    import json
    import zipfile

    from vhrdata.store import open_store
    from vhrmodel.artifact import CHECKSUM_FILE, FORMAT_VERSION, settings_to_dict
    from vhrmodel.config import train_alphabet

    opened = open_store(store)
    preprocessing = settings_to_dict(opened.settings)
    if height is not None:
        preprocessing["height"] = height
    config = {"class_name": "CRNN", "config": {"alphabet": alphabet or train_alphabet(opened),
                                               "preprocessing": preprocessing, "format_version": FORMAT_VERSION}}
    run.mkdir()
    with zipfile.ZipFile(run / "last.keras", "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr(CHECKSUM_FILE, json.dumps({"weights_sha256": "0" * 64}))
    (run / "state.json").write_text(state if state is not None else json.dumps({"epoch": 2, "store": "work/old"}))
    return run


@pytest.mark.parametrize("case,needles", [
    ("charset", ["another charset", "the store lacks 'Ж'", "trained on work/old", "--init-from"]),
    ("preprocessing", ["other preprocessing settings", "height 40 != 32", "--init-from"]),
    ("epochs", ["already trained 2 epochs", "--epochs larger than 2"]),
    ("state", ["cannot read", "state.json", "--init-from"]),
])
def test_train_refuses_a_resume_that_cannot_go_on(line_store, tmp_path, case, needles):
    from vhrdata.store import open_store
    from vhrmodel.config import train_alphabet

    kw = {"charset": {"alphabet": train_alphabet(open_store(line_store)) + "Ж"}, "preprocessing": {"height": 40},
          "epochs": {}, "state": {"state": "{ half a file"}}[case]
    run = _run_to_resume(tmp_path / "run", line_store, **kw)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    epochs = 2 if case == "epochs" else 5
    assert_fast_failure(["train", "--store", line_store, "--out", run, "--resume", "--epochs", epochs], *needles,
                        status=1)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_train_refuses_a_store_without_val_split(no_val_store, tmp_path):
    line = assert_fast_failure(["train", "--store", no_val_store, "--out", tmp_path / "run"], "'val'", "vhrdata split",
                               status=1)
    assert "'train': 4" in line  # the counts per split say what is there
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_missing_store(tmp_path):
    assert_fast_failure(["train", "--store", tmp_path / "nowhere", "--out", tmp_path / "run"], "nowhere",
                        "does not exist", "vhrdata build-lmdb", status=1)


def test_train_refuses_a_missing_init_from(line_store, tmp_path):
    assert_fast_failure(["train", "--store", line_store, "--out", tmp_path / "run", "--init-from", tmp_path / "x.keras"],
                        "x.keras", "does not exist", status=1)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_missing_model_file_is_refused(command, line_store, tmp_path):
    missing = tmp_path / "none.keras"
    if command == "evaluate":
        args = ["evaluate", "--model", missing, "--store", line_store, "--out", tmp_path / "e"]
    else:
        image = tmp_path / "line.png"
        image.write_bytes(b"")
        args = ["predict", "--model", missing, image]
    assert_fast_failure(args, "none.keras", "does not exist", status=1)


def test_evaluate_refuses_a_missing_store_and_an_unknown_split(fake_model, line_store, tmp_path):
    assert_fast_failure(["evaluate", "--model", fake_model, "--store", tmp_path / "nowhere", "--out", tmp_path / "e"],
                        "nowhere", "does not exist", status=1)
    assert_fast_failure(["evaluate", "--model", fake_model, "--store", line_store, "--split", "dev",
                         "--out", tmp_path / "e"], "'dev'", "'train': 16", status=1)
    assert not (tmp_path / "e").exists()


def test_lm_without_beam_is_refused_alike_by_predict_and_evaluate(fake_model, lm_file, line_store, tmp_path):
    image = tmp_path / "line.png"
    image.write_bytes(b"")
    by_predict = assert_fast_failure(["predict", "--model", fake_model, "--lm", lm_file, image], "--decoder beam",
                                     status=2)
    by_evaluate = assert_fast_failure(["evaluate", "--model", fake_model, "--store", line_store, "--out",
                                       tmp_path / "e", "--lm", lm_file], "--decoder beam", status=2)
    assert by_predict == by_evaluate


def test_predict_refuses_inputs_that_hold_no_image(fake_model, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_fast_failure(["predict", "--model", fake_model, tmp_path / "nothing.png"], "nothing.png",
                        "no such file", status=1)
    assert_fast_failure(["predict", "--model", fake_model, str(tmp_path / "*.jpg")], "*.jpg", "matches", status=1)
    assert_fast_failure(["predict", "--model", fake_model, tmp_path / "empty"], "empty", "no images", status=1)


def test_predict_refuses_an_unknown_out_format(fake_model, tmp_path):
    assert_fast_failure(["predict", "--model", fake_model, "--out", tmp_path / "r.txt", tmp_path],
                        ".csv or .jsonl", status=2)
