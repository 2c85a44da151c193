"""Hostile training runs through `vhrmodel train` (issue 10): a resume on a store the run was not
trained on, and a full disk (or an I/O error) while a checkpoint is saved.

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
from vhrmodel.config import BEST_MODEL, LAST_MODEL, STATE

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


def resume(store: Path, run: Path, epochs: int = 2):
    return cli("train", "--store", store, "--out", run, "--resume", "--epochs", epochs, "--batch-size", 4,
               "--workers", 0, "--no-augment", "--no-tensorboard", "--no-address-lm", "-q")


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
