"""Hostile training runs through `vhrmodel train` (issue 10): a resume on a store the run was not
trained on, and a full disk (or an I/O error) while a checkpoint, the run's JSON, LM and history
files, the sample grids or the TensorBoard logs are written.

Each case asserts a non-zero exit, one `Error:` line without "Traceback", and that the run folder's
earlier files are as they were: byte for byte, loadable, and with no temporary files left.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from vhrmodel_fixtures import TEXTS, build_line_store, overfit_config

from vhrmodel.artifact import load_model
from vhrmodel.cli import main
from vhrmodel.config import BEST_MODEL, CHAR_LM, HISTORY, HISTORY_PLOT, LAST_MODEL, STATE, SUMMARY

BASE_TEXTS = TEXTS[:4]  # one batch of 4: an epoch is one step


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res) -> str:
    out = res.output
    assert res.exit_code == 1, out
    assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out
    return errors[0]


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def temp_files(run: Path) -> list[str]:
    return [str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name]


def resume(store: Path, run: Path, epochs: int = 2, tensorboard: bool = False):
    return cli("train", "--store", store, "--out", run, "--resume", "--epochs", epochs, "--batch-size", 4,
               "--workers", 0, "--no-augment", "--no-address-lm", "-q", *([] if tensorboard else ["--no-tensorboard"]))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """(store, run folder): the tiny preset trained for 1 epoch on 4 lines at height 32."""
    from vhrmodel.train import train

    root = tmp_path_factory.mktemp("hostile_train")
    store = build_line_store(root / "data", texts=BASE_TEXTS)
    run = root / "run"
    train(store, run, overfit_config(epochs=1, grid_samples=0, address_lm=False))
    return store, run


@pytest.fixture
def run(base, tmp_path) -> Path:
    """A copy of the base run, for one test to break."""
    return Path(shutil.copytree(base[1], tmp_path / "run"))


# ----------------------------------------------------------------------------- resume on another store


@pytest.mark.parametrize("other,words", [
    (dict(texts=BASE_TEXTS, height=40), ["other preprocessing settings", "height 32 != 40"]),
    (dict(texts=TEXTS[4:8]), ["another charset", "the store adds"]),
], ids=["preprocessing", "charset"])
def test_resume_on_a_store_of_other_settings_or_charset_is_refused(base, run, tmp_path, other, words):
    store, _ = base
    other_store = build_line_store(tmp_path / "other", **other)
    before = snapshot(run)
    line = one_line_error(resume(other_store, run))
    for w in words:
        assert w in line, line
    assert str(store) in line  # names the store the run was trained on (from state.json)
    assert "--init-from" in line and "another --out" in line
    assert snapshot(run) == before  # refused before anything in the run folder was written


# ----------------------------------------------------------------------------- a full disk during a save


def _fail_keras_save(monkeypatch, exc: OSError) -> None:
    """Keras writes part of the archive, then the disk is full."""
    import keras

    def save(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK\x03\x04 half an archive")
        raise exc

    monkeypatch.setattr(keras.Model, "save", save)


def _fail_replace_to(monkeypatch, suffix: str, code: int) -> None:
    """The rename onto a file whose name ends in `suffix` fails (Path.replace goes through os.replace)."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(suffix):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _fail_fsync(monkeypatch) -> None:
    import vhrdata.records

    def fsync(path):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(vhrdata.records, "fsync_path", fsync)  # save_model calls it by this name


FAULTS = {
    "keras write": (lambda m: _fail_keras_save(m, OSError(errno.ENOSPC, "No space left on device")), "disk full"),
    # h5py and pyarrow raise OSError without errno, with the system's words in the text
    "write without errno": (lambda m: _fail_keras_save(m, OSError(
        "Unable to synchronously write file (file write failed: errno = 28, error message = 'No space left on "
        "device')")), "disk full"),
    "fsync": (_fail_fsync, "I/O error"),
    "rename": (lambda m: _fail_replace_to(m, ".keras", errno.ENOSPC), "disk full"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_full_disk_during_a_checkpoint_keeps_the_previous_models(base, run, monkeypatch, fault):
    store, _ = base
    before = snapshot(run)
    inject, words = FAULTS[fault]
    with monkeypatch.context() as m:
        inject(m)
        line = one_line_error(resume(store, run))
    assert words in line and "unchanged" in line, line
    assert "free space" in line and "another --out" in line, line  # what to do
    assert f"--resume` continues the run from {run / LAST_MODEL}" in line, line
    assert temp_files(run) == []
    after = snapshot(run)
    for name in (BEST_MODEL, LAST_MODEL, STATE):  # epoch 1's files, not a partial epoch 2
        assert after[name] == before[name], name
    assert load_model(run / LAST_MODEL, compile=True).alphabet == load_model(run / BEST_MODEL).alphabet
    if fault == "keras write":  # once the disk has space again, the run goes on from epoch 1
        res = resume(store, run)
        assert res.exit_code == 0, res.output
        assert json.loads((run / STATE).read_text())["epoch"] == 2


def test_full_disk_while_writing_the_run_state_is_one_line(base, run, monkeypatch):
    store, _ = base
    before = snapshot(run)
    with monkeypatch.context() as m:
        _fail_replace_to(m, STATE, errno.ENOSPC)
        line = one_line_error(resume(store, run))
    assert "disk full" in line and f"previous {STATE} is unchanged" in line and "free space" in line, line
    assert temp_files(run) == []
    assert (run / STATE).read_bytes() == before[STATE]
    load_model(run / LAST_MODEL, compile=True)
    load_model(run / BEST_MODEL)


# ----------------------------------------------------------------------------- a full disk on the run's other files


@pytest.mark.parametrize("name", [CHAR_LM, HISTORY, HISTORY_PLOT])
def test_full_disk_on_a_run_file_is_one_line_that_names_it(base, run, monkeypatch, name):
    """charlm.json is written before the first epoch, history.csv and history.png after each one."""
    store, _ = base
    before = snapshot(run)
    with monkeypatch.context() as m:
        _fail_replace_to(m, name, errno.ENOSPC)  # the temporary file is written, its rename fails
        line = one_line_error(resume(store, run))
    assert "disk full" in line and f"while writing {name} in {run}" in line, line
    assert f"the previous {name} is unchanged" in line and "free space" in line, line
    assert f"--resume` continues the run from {run / LAST_MODEL}" in line, line
    assert temp_files(run) == []
    after = snapshot(run)
    for kept in (name, BEST_MODEL, LAST_MODEL, STATE):  # epoch 1's
        assert after[kept] == before[kept], kept
    res = resume(store, run)  # with space again, the run goes on from epoch 1
    assert res.exit_code == 0, res.output
    assert json.loads((run / STATE).read_text())["epoch"] == 2


def test_full_disk_on_a_fresh_runs_lm_says_nothing_was_written(base, tmp_path, monkeypatch):
    store, _ = base
    with monkeypatch.context() as m:
        _fail_replace_to(m, CHAR_LM, errno.ENOSPC)
        line = one_line_error(cli("train", "--store", store, "--out", tmp_path / "new", "--epochs", 1, "--batch-size",
                                  4, "--workers", 0, "--no-augment", "--no-address-lm", "--no-tensorboard", "-q"))
    assert f"no {CHAR_LM} was written" in line and "free space or choose another --out" in line, line
    assert "--resume" not in line  # there is no checkpoint to resume from yet
    assert temp_files(tmp_path / "new") == [] and not (tmp_path / "new" / LAST_MODEL).exists()


def test_full_disk_on_train_json_says_training_finished(base, run, monkeypatch):
    store, _ = base
    before = snapshot(run)
    with monkeypatch.context() as m:
        _fail_replace_to(m, SUMMARY, errno.ENOSPC)
        line = one_line_error(resume(store, run))
    assert f"while writing {SUMMARY} in {run}" in line and "training finished" in line, line
    assert line.endswith("free space"), line  # nothing to re-run: the models are saved
    assert temp_files(run) == []
    assert (run / SUMMARY).read_bytes() == before[SUMMARY]
    assert json.loads((run / STATE).read_text())["epoch"] == 2  # the epoch was trained and checkpointed
    load_model(run / LAST_MODEL, compile=True)
    load_model(run / BEST_MODEL)


def test_full_disk_on_a_sample_grid_warns_and_training_goes_on(base, run, monkeypatch, caplog):
    store, _ = base
    with monkeypatch.context() as m, caplog.at_level("WARNING", logger="vhrmodel.callbacks"):
        _fail_replace_to(m, "epoch_002.png", errno.ENOSPC)
        res = resume(store, run, 3)
    assert res.exit_code == 0, res.output
    warned = [r.getMessage() for r in caplog.records if "epoch_002.png" in r.getMessage()]
    assert len(warned) == 1 and "disk full" in warned[0] and "training continues without it" in warned[0], warned
    assert not (run / "samples" / "epoch_002.png").exists() and (run / "samples" / "epoch_003.png").exists()
    assert temp_files(run) == []
    assert json.loads((run / STATE).read_text())["epoch"] == 3


def _tf_write_error():
    tf = pytest.importorskip("tensorflow")
    return tf.errors.ResourceExhaustedError(None, None, "tensorboard/train/events.out: No space left on device")


@pytest.mark.parametrize("error", ["OSError", "tf.errors"])
def test_full_disk_on_tensorboard_logs_warns_and_training_goes_on(base, run, monkeypatch, caplog, error):
    import keras

    pytest.importorskip("tensorboard")
    store, _ = base
    exc = OSError(errno.ENOSPC, "No space left on device") if error == "OSError" else _tf_write_error()
    calls = []

    def log_epoch(self, epoch, logs):  # what Keras' TensorBoard callback writes the epoch's scalars with
        calls.append(epoch)
        raise exc

    with monkeypatch.context() as m, caplog.at_level("WARNING", logger="vhrmodel.callbacks"):
        m.setattr(keras.callbacks.TensorBoard, "_log_epoch_metrics", log_epoch)
        res = resume(store, run, 3, tensorboard=True)
    assert res.exit_code == 0, res.output
    assert calls == [1]  # after the first failure the logs stop
    warned = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warned) == 1 and "training continues without TensorBoard logs" in warned[0], warned
    assert "disk full" in warned[0], warned
    assert (run / "tensorboard").is_dir()
    assert json.loads((run / STATE).read_text())["epoch"] == 3
