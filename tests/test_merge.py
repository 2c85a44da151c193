"""`vhrdata merge`: real and synthetic records into one split folder that every later stage reads."""

import json
import shutil

import pytest
from click.testing import CliRunner

from conftest import write_line_image
from vhrdata.cli import main
from vhrdata.errors import OutputNotWritable, RecordsError
from vhrdata.ingest import IngestSettings, ingest
from vhrdata.merge import MergeInput, merge_records
from vhrdata.quarantine import read_quarantine
from vhrdata.records import read_records
from vhrdata.split import split_records


def kalapa(root, writers, per_writer=4, seed=0, bad=False):
    """A Kalapa folder; `bad` adds one line whose image is missing (quarantined by ingest)."""
    for wi, w in enumerate(writers):
        lines = []
        for i in range(per_writer):
            write_line_image(root / "images" / w / f"{i}.jpg", seed=seed + wi * 100 + i)
            lines.append(f"{w}/{i}.jpg\tSố {i} đường Trần Phú, Hà Nội")
        if bad and wi == 0:
            lines.append(f"{w}/missing.jpg\tPhường 3, Quận 5")
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{w}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def real_and_synth(tmp_path):
    real = tmp_path / "real"
    ingest(kalapa(tmp_path / "raw-real", [f"w{i}" for i in range(10)], bad=True), real, IngestSettings(workers=1))
    split_records(real, (0.6, 0.2, 0.2), seed=0)
    synth = tmp_path / "synth"  # the same writer names as the real set: different people
    ingest(kalapa(tmp_path / "raw-synth", ["w0", "w1", "w2"], seed=5000), synth, IngestSettings(workers=1))
    return real, synth


def test_merge_keeps_each_inputs_split_and_puts_train_only_lines_in_train(tmp_path, real_and_synth):
    real, synth = real_and_synth
    before = read_records(real)
    result = merge_records([MergeInput(real), MergeInput(synth, train_only=True)], tmp_path / "mixed")
    merged = read_records(tmp_path / "mixed", require_split=True)
    assert len(merged) == len(before) + 12 == result.kept
    # The real lines keep their splits exactly: a test line stays a test line.
    mine = merged[merged["id"].str.startswith("real/")]
    assert dict(zip(mine["id"], mine["split"])) == {f"real/{i}": s for i, s in zip(before["id"], before["split"])}
    assert set(merged.loc[merged["id"].str.startswith("synth/"), "split"]) == {"train"}
    # Writers are namespaced: the synthetic w0 is not the real w0, so no writer leaks across splits.
    assert {"real/w0", "synth/w0"} <= set(merged["writer"])
    split_info = json.loads((tmp_path / "mixed" / "split.json").read_text(encoding="utf-8"))
    assert split_info["leakage"]["ok"] and split_info["lines"] == result.lines
    assert result.lines["train"] == int((before["split"] == "train").sum()) + 12


def test_counts_reconcile_and_quarantine_is_carried_over(tmp_path, real_and_synth):
    real, synth = real_and_synth
    result = merge_records([MergeInput(real), MergeInput(synth, train_only=True)], tmp_path / "mixed")
    q = read_quarantine(tmp_path / "mixed")
    assert [d["reason"] for d in q] == ["missing_image"] and q[0]["id"].startswith("real/")
    report = json.loads((tmp_path / "mixed" / "ingest.json").read_text(encoding="utf-8"))
    assert report["counts"]["in"] == result.n_in == result.kept + result.quarantined == 40 + 1 + 12
    assert [d["run_id"] for d in report["inputs"]] == [
        json.loads((p / "ingest.json").read_text(encoding="utf-8"))["run_id"] for p in (real, synth)]


def test_an_image_in_two_inputs_is_quarantined_once_not_leaked(tmp_path, real_and_synth):
    real, _ = real_and_synth
    copy = tmp_path / "copy"
    shutil.copytree(real, copy)
    result = merge_records([MergeInput(real), MergeInput(copy, train_only=True)], tmp_path / "mixed")
    merged = read_records(tmp_path / "mixed")
    assert len(merged) == 40 and result.by_reason["duplicate_image"] == 40
    dup = [d for d in read_quarantine(tmp_path / "mixed") if d["reason"] == "duplicate_image"]
    assert all(d["id"].startswith("copy/") and d["duplicate_of"].startswith("real/") for d in dup)
    assert merged["sha1"].is_unique


def test_refusals(tmp_path, real_and_synth):
    real, synth = real_and_synth
    with pytest.raises(RecordsError, match="not split.*--train-only"):
        merge_records([MergeInput(real), MergeInput(synth)], tmp_path / "mixed")
    with pytest.raises(RecordsError, match="one of the inputs"):
        merge_records([MergeInput(real), MergeInput(synth, train_only=True)], synth)
    with pytest.raises(RecordsError, match="nothing to merge"):
        merge_records([], tmp_path / "mixed")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputNotWritable, match="did not write"):
        merge_records([MergeInput(real)], tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_merging_again_replaces_the_earlier_merge(tmp_path, real_and_synth):
    real, synth = real_and_synth
    merge_records([MergeInput(real), MergeInput(synth, train_only=True)], tmp_path / "mixed")
    merge_records([MergeInput(real)], tmp_path / "mixed")
    assert len(read_records(tmp_path / "mixed")) == 40


def test_cli_merge_then_build_lmdb(tmp_path, real_and_synth):
    real, synth = real_and_synth
    runner = CliRunner()
    r = runner.invoke(main, ["merge", str(real), "--train-only", str(synth), "--out", str(tmp_path / "mixed")])
    assert r.exit_code == 0, r.output
    assert "in 53 · kept 52 · quarantined 1" in r.output and "synth: 12 lines (train only)" in r.output
    r = runner.invoke(main, ["build-lmdb", str(tmp_path / "mixed"), "--out", str(tmp_path / "store"),
                             "--height", "32", "--workers", "1"])
    assert r.exit_code == 0, r.output
    index = json.loads((tmp_path / "store" / "index.json").read_text(encoding="utf-8"))
    merged = read_records(tmp_path / "mixed")
    assert {s: index["splits"][s]["count"] for s in ("train", "val", "test")} == {
        s: int(merged["split"].eq(s).sum()) for s in ("train", "val", "test")}
    assert index["splits"]["train"]["count"] == 12 + int(read_records(real)["split"].eq("train").sum())
    r = runner.invoke(main, ["verify", str(tmp_path / "store")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["merge", str(real), str(synth), "--out", str(tmp_path / "m2")])
    assert r.exit_code != 0 and "Traceback" not in r.output and "--train-only" in r.output
