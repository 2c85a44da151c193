"""`vhrdata degrade`: camera copies of a split, the test-camera evaluation set."""

import csv
import json

import numpy as np
from click.testing import CliRunner

from test_ingest import make_kalapa
from vhrdata.cli import main
from vhrdata.images import decode_image
from vhrdata.records import read_records
from vhrdata.synth import TEST_CAMERA_SEED


def _records(tmp_path):
    make_kalapa(tmp_path / "raw", writers=("w1", "w2", "w3", "w4", "w5"), per_writer=2)
    r = CliRunner()
    assert r.invoke(main, ["ingest", str(tmp_path / "raw"), "--out", str(tmp_path / "rec")]).exit_code == 0
    res = r.invoke(main, ["split", str(tmp_path / "rec"), "--ratios", "0.6,0.2,0.2", "--method", "balanced"])
    assert res.exit_code == 0, res.output
    return tmp_path / "rec"


def test_degrade_copies_the_test_split_deterministically_and_ingests_as_a_test_only_set(tmp_path):
    rec = _records(tmp_path)
    test = read_records(rec)
    test = test[test.split == "test"]
    r = CliRunner()
    res = r.invoke(main, ["degrade", str(rec), "--out", str(tmp_path / "cam")])
    assert res.exit_code == 0, res.output
    assert f"wrote {len(test)} camera copies of split test" in res.output and str(TEST_CAMERA_SEED) in res.output
    rows = list(csv.DictReader(open(tmp_path / "cam" / "manifest.csv", encoding="utf-8")))
    assert sorted(row["id"] for row in rows) == sorted(test.id)
    assert {row["text"] for row in rows} == set(test.text)
    assert {row["writer"] for row in rows} == set(test.writer)
    summary = json.loads((tmp_path / "cam" / "degrade.json").read_text())
    assert summary["lines"] == len(test) and summary["seed"] == TEST_CAMERA_SEED and summary["skipped"] == []
    # Each copy is the source's size and differs from it (the camera transform ran).
    by_id = dict(zip(test.id, test.path))
    for row in rows:
        src, out = decode_image(by_id[row["id"]]), decode_image(tmp_path / "cam" / row["path"])
        assert out.shape == src.shape and np.abs(out.astype(int) - src).mean() > 2
    # Same records, split and seed → the same bytes; another seed → other images.
    assert r.invoke(main, ["degrade", str(rec), "--out", str(tmp_path / "cam2")]).exit_code == 0
    assert r.invoke(main, ["degrade", str(rec), "--out", str(tmp_path / "cam3"), "--seed", "1"]).exit_code == 0
    first = rows[0]["path"]
    assert (tmp_path / "cam2" / first).read_bytes() == (tmp_path / "cam" / first).read_bytes()
    assert (tmp_path / "cam3" / first).read_bytes() != (tmp_path / "cam" / first).read_bytes()
    # The copy is an evaluation-only set: ingest, then split 0,0,1 puts every line in test.
    assert r.invoke(main, ["ingest", str(tmp_path / "cam"), "--out", str(tmp_path / "cam-rec")]).exit_code == 0
    res = r.invoke(main, ["split", str(tmp_path / "cam-rec"), "--ratios", "0,0,1"])
    assert res.exit_code == 0, res.output
    assert set(read_records(tmp_path / "cam-rec").split) == {"test"}


def test_degrade_refuses_a_non_empty_out_and_a_missing_split(tmp_path):
    rec = _records(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    r = CliRunner()
    res = r.invoke(main, ["degrade", str(rec), "--out", str(tmp_path / "busy")])
    assert res.exit_code != 0 and "is not empty" in res.output and "Traceback" not in res.output
    assert (tmp_path / "busy" / "x.txt").read_text() == "mine"
    make_kalapa(tmp_path / "raw2")
    assert r.invoke(main, ["ingest", str(tmp_path / "raw2"), "--out", str(tmp_path / "rec2")]).exit_code == 0
    res = r.invoke(main, ["degrade", str(tmp_path / "rec2"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "split" in res.output and len(res.output.strip().splitlines()) == 1


def test_split_ratios_allow_only_0_0_1_without_train(tmp_path):
    from vhrdata.errors import SplitError
    from vhrdata.split import parse_ratios
    import pytest

    assert parse_ratios("0,0,1") == (0.0, 0.0, 1.0)
    for bad in ("0,0.5,0.5", "0,1,0"):
        with pytest.raises(SplitError, match="0,0,1 for an evaluation-only set"):
            parse_ratios(bad)
