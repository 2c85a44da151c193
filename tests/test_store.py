"""Store build and verify: round trip, counts, CTC quarantine, resume, refusal, map growth, fan-out, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from vhrdata.cli.store import build_lmdb_cmd, verify_cmd
from vhrdata.errors import StoreError
from vhrdata.preprocess import PreprocessSettings, preprocess_image
from vhrdata.quarantine import read_quarantine
from vhrdata.records import read_records, write_records
from vhrdata.store import (
    ShardWriter,
    build_store,
    ctc_frames_needed,
    decode_record,
    encode_record,
    is_store,
    open_store,
    verify_store,
)
from vhrdata.store.disk_format import HEADER_SIZE, INDEX_FILE, record_key
from vhrdata.store.toy_records import write_toy_records

SETTINGS = PreprocessSettings(height=32, max_width=512)


@pytest.fixture
def records(tmp_path) -> Path:
    write_toy_records(tmp_path / "records", n=30, seed=1)
    return tmp_path / "records"


def all_samples(store_path):
    store = open_store(store_path)
    return {name: [tuple(s[1:]) + (s.image.tobytes(),) for s in store.split(name)] for name in store.splits}


def shard_hashes(index):
    return {e["path"]: e["sha256"] for s in index["splits"].values() for e in s["shards"]}


def test_round_trip_equals_direct_preprocessing(records, tmp_path):
    settings = PreprocessSettings(height=32, binarize="otsu")
    result = build_store(records, tmp_path / "store", settings, workers=1)
    df = read_records(records).set_index("id")
    store = open_store(tmp_path / "store")
    assert store.settings == settings and is_store(tmp_path / "store")
    seen = 0
    for name in store.splits:
        ds = store.split(name)
        assert len(ds) == int((df["split"] == name).sum())
        for i, sample in enumerate(ds):
            row = df.loc[sample.id]
            np.testing.assert_array_equal(sample.image, preprocess_image(row["path"], settings))
            assert (sample.text, sample.writer, row["split"]) == (row["text"], row["writer"], name)
            assert ds[i].id == sample.id
            assert ds.widths[i] == sample.image.shape[1]
            seen += 1
    assert seen == len(df) == result.counts["stored"]


def test_index_describes_the_store(records, tmp_path):
    build_store(records, tmp_path / "store", SETTINGS, workers=1, shards=2)
    df = read_records(records)
    index = json.loads((tmp_path / "store" / INDEX_FILE).read_text())
    assert index["schema_version"] == 1 and index["settings_hash"] == SETTINGS.hash()
    assert index["counts"] == {"in": len(df), "stored": len(df), "quarantined": 0, "by_reason": {}}
    assert index["alphabet"] == "".join(sorted(set("".join(df["text"]))))
    for name, info in index["splits"].items():
        part = df[df["split"] == name]
        assert info["count"] == len(part)
        assert info["alphabet"] == "".join(sorted(set("".join(part["text"]))))
        assert sum(info["width_histogram"].values()) == len(part)
        assert info["label_length_histogram"] == {
            str(k): v for k, v in sorted(part["text"].str.len().value_counts().items())
        }
        assert [e["path"] for e in info["shards"]] == [f"{name}/shard-0000{i}-of-00002.lmdb" for i in range(2)]
        assert [e["first"] for e in info["shards"]] == [0, info["shards"][0]["count"]]
        assert all(len(e["sha256"]) == 64 for e in info["shards"])
    assert index["build"]["records_fingerprint"] == index["build"]["identity"]["records_fingerprint"]


def test_record_encoding_round_trips_and_checks_crc():
    img = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5)
    value = encode_record(img, "Hà Nội", "id/1", None)
    rec = decode_record(value, check_crc=True)
    np.testing.assert_array_equal(rec.image, img)
    assert (rec.text, rec.id, rec.writer) == ("Hà Nội", "id/1", None)
    assert decode_record(encode_record(img, "", "x", "w7")).writer == "w7"
    broken = bytearray(value)
    broken[HEADER_SIZE + 3] ^= 0x01
    with pytest.raises(ValueError, match="CRC32"):
        decode_record(bytes(broken), check_crc=True)


def test_verify_passes_on_a_clean_store(records, tmp_path):
    build_store(records, tmp_path / "store", SETTINGS, workers=1)
    report = verify_store(tmp_path / "store")
    assert report.ok, report.faults
    assert report.records == 30 and sum(report.splits.values()) == 30


def _flip(store: Path, split: str, key: int, where) -> str:
    """Flip one byte of the record `key` inside data.mdb; returns the shard's relative path."""
    ds = open_store(store).split(split)
    value = bytes(ds._get_txns()[0].get(record_key(key)))
    rel = f"{split}/shard-00000-of-00001.lmdb"
    data_path = store / rel / "data.mdb"
    blob = bytearray(data_path.read_bytes())
    at = blob.find(value)
    assert at >= 0 and blob.find(value, at + 1) < 0
    blob[at + where(value)] ^= 0x10
    with open(data_path, "r+b") as f:  # in place: the same inode, as a disk fault would be
        f.write(blob)
    return rel


def _label_offset(value):
    rec = decode_record(value)
    return HEADER_SIZE + rec.image.size + 1


@pytest.mark.parametrize(
    "where",
    [lambda v: 0, lambda v: 5, lambda v: 8, lambda v: HEADER_SIZE, lambda v: HEADER_SIZE + 40,
     _label_offset, lambda v: len(v) - 1],
    ids=["crc", "flags", "width", "first-pixel", "pixel", "label", "last-byte"],
)
def test_verify_catches_a_flipped_byte_anywhere_in_a_record(records, tmp_path, where):
    store = tmp_path / "store"
    build_store(records, store, SETTINGS, workers=1)
    rel = _flip(store, "train", 3, where)
    report = verify_store(store)
    assert not report.ok
    assert any(rel in f and "key 000000003" in f for f in report.faults), report.faults


def test_verify_reports_a_missing_shard_and_an_edited_index(records, tmp_path):
    store = tmp_path / "store"
    build_store(records, store, SETTINGS, workers=1)
    index = json.loads((store / INDEX_FILE).read_text())
    index["counts"]["stored"] += 1
    (store / INDEX_FILE).write_text(json.dumps(index))
    import shutil

    shutil.rmtree(store / "val" / "shard-00000-of-00001.lmdb")
    faults = verify_store(store).faults
    assert any("val/shard-00000-of-00001.lmdb: missing" in f for f in faults)
    assert any("counts.stored" in f for f in faults)


def test_ctc_frames_needed_counts_repeated_pairs():
    assert ctc_frames_needed("abc") == 3
    assert ctc_frames_needed("aab") == 4
    assert ctc_frames_needed("aaa") == 5
    assert ctc_frames_needed("") == 0


def _records_with(tmp_path, items) -> Path:
    """records.parquet from (width, text) pairs, one 32-px-high image each, all in train."""
    rows = []
    for i, (width, text) in enumerate(items):
        img = np.full((32, width), 230, np.uint8)
        cv2.line(img, (2, 16), (width - 3, 10), 20, 2)
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
        rows.append({"id": f"r{i}", "source": "manifest", "writer": None, "path": str(path), "text": text,
                     "raw_text": text, "width": width, "height": 32, "sha1": f"{i:040x}", "origin": f"m:{i}",
                     "split": "train"})
    write_records(pd.DataFrame(rows), tmp_path / "rec")
    return tmp_path / "rec"


def test_ctc_infeasible_records_are_quarantined_and_counted(tmp_path):
    # 80 px at height 32 and downsample 4 give 20 frames.
    fits = "abcdefghijklmnopqrst"  # 20 distinct characters: 20 frames
    repeat = "abcdefghijklmnopqrss"  # 20 characters with one repeated pair: 21 frames
    rec = _records_with(tmp_path, [(80, fits), (80, repeat), (80, "ab")])
    result = build_store(rec, tmp_path / "store", PreprocessSettings(height=32), workers=1)
    assert result.counts == {"in": 3, "stored": 2, "quarantined": 1, "by_reason": {"ctc_infeasible": 1}}
    (item,) = read_quarantine(tmp_path / "store" / "quarantine.jsonl")
    assert (item["id"], item["reason"]) == ("r1", "ctc_infeasible")
    assert "21 CTC frames" in item["message"] and "20 frames" in item["message"]
    store = open_store(tmp_path / "store")
    assert sorted(s.id for s in store.split("train")) == ["r0", "r2"]
    assert store.index["splits"]["train"]["quarantined"] == 1
    assert verify_store(tmp_path / "store").ok
    # A smaller downsample makes it fit again; the changed setting is refused without --overwrite.
    with pytest.raises(StoreError, match="downsample"):
        build_store(rec, tmp_path / "store", PreprocessSettings(height=32), downsample=2, workers=1)
    again = build_store(rec, tmp_path / "store", PreprocessSettings(height=32), downsample=2, workers=1,
                        overwrite=True)
    assert again.counts["quarantined"] == 0


def test_missing_and_broken_images_are_quarantined_not_fatal(records, tmp_path):
    df = read_records(records).sort_values("id")
    Path(df["path"].iloc[0]).unlink()
    Path(df["path"].iloc[1]).write_bytes(b"not a png")
    result = build_store(records, tmp_path / "store", SETTINGS, workers=1)
    assert result.counts["by_reason"] == {"missing_image": 1, "not_an_image": 1}
    assert result.counts["stored"] + result.counts["quarantined"] == result.counts["in"] == 30


def test_interrupted_build_resumes_and_equals_a_clean_build(records, tmp_path):
    store = tmp_path / "store"

    class Killed(Exception):
        pass

    calls = []

    def die_after_first_shard(done, total):
        calls.append(done)
        if len(calls) == 3:  # chunks are one shard each here: shard 1 is mid-way, shard 0 is renamed
            raise Killed()

    with pytest.raises(Killed):
        build_store(records, store, SETTINGS, workers=1, shards=3, callback=die_after_first_shard)
    finished = sorted(p.relative_to(store).as_posix() for p in store.glob("*/shard-*.lmdb"))
    assert finished == ["train/shard-00000-of-00003.lmdb"]
    with pytest.raises(StoreError, match="has no index.json"):
        open_store(store)
    # A process killed with SIGKILL leaves its temporary folder behind.
    stale = store / "train" / ".shard-00001-of-00003.lmdb.tmp-otherhost-999"
    stale.mkdir()
    (stale / "data.mdb").write_bytes(b"half written")
    inode = os.stat(store / finished[0] / "data.mdb").st_ino

    result = build_store(records, store, SETTINGS, workers=1, shards=3)
    assert result.kept == finished and len(result.built) == 5 and result.index is not None
    assert os.stat(store / finished[0] / "data.mdb").st_ino == inode
    assert not stale.exists()
    clean = build_store(records, tmp_path / "clean", SETTINGS, workers=1, shards=3)
    assert shard_hashes(result.index) == shard_hashes(clean.index)
    assert all_samples(store) == all_samples(tmp_path / "clean")
    assert verify_store(store).ok


def test_rerun_with_same_inputs_keeps_everything(records, tmp_path):
    first = build_store(records, tmp_path / "store", SETTINGS, workers=1)
    stamp = (tmp_path / "store" / INDEX_FILE).stat().st_mtime_ns
    again = build_store(records, tmp_path / "store", SETTINGS, workers=1)
    assert again.built == [] and sorted(again.kept) == sorted(first.built)
    assert again.index == first.index
    assert (tmp_path / "store" / INDEX_FILE).stat().st_mtime_ns == stamp


def test_other_settings_are_refused(records, tmp_path):
    store = tmp_path / "store"
    build_store(records, store, SETTINGS, workers=1)
    other = PreprocessSettings(height=48, max_width=512)
    with pytest.raises(StoreError, match=r"height 32 != 48.*--overwrite"):
        build_store(records, store, other, workers=1)
    with pytest.raises(StoreError, match="other settings"):
        open_store(store, settings=other)
    assert open_store(store, settings=SETTINGS).settings == SETTINGS
    build_store(records, store, other, workers=1, overwrite=True)
    assert open_store(store).settings == other
    assert verify_store(store).ok


def test_other_records_are_refused(records, tmp_path):
    store = tmp_path / "store"
    build_store(records, store, SETTINGS, workers=1)
    df = read_records(records)
    df.loc[0, "text"] = df.loc[0, "text"] + "x"
    write_records(df, records)
    with pytest.raises(StoreError, match="other records"):
        build_store(records, store, SETTINGS, workers=1)


def test_shards_of_a_half_built_store_are_checked_too(records, tmp_path):
    store = tmp_path / "store"
    build_store(records, store, SETTINGS, workers=1, shards=2, shard_index=0)
    with pytest.raises(StoreError, match="other preprocessing settings"):
        build_store(records, store, PreprocessSettings(height=40), workers=1, shards=2, shard_index=1)
    with pytest.raises(StoreError, match="would not write"):
        build_store(records, store, SETTINGS, workers=1, shards=3)


def test_a_folder_that_is_not_a_store_is_refused(records, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="does not look like a store"):
        build_store(records, tmp_path / "busy", SETTINGS, workers=1)
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nowhere")


def test_map_grows_from_a_tiny_initial_size(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, int(rng.integers(50, 300))), dtype=np.uint8) for _ in range(60)]
    path = tmp_path / "train" / "shard-00000-of-00001.lmdb"
    with ShardWriter(path, {"split": "train"}, initial_map_size=4096 * 4, txn_bytes=64 << 10) as writer:
        for i, img in enumerate(images):
            writer.add(encode_record(img, f"line {i}", f"id{i}", None))
    assert writer.map_growths >= 3 and writer.map_size > 4096 * 4
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == 60
        for i, img in enumerate(images):
            np.testing.assert_array_equal(decode_record(txn.get(record_key(i)), check_crc=True).image, img)
    env.close()


def test_build_with_a_tiny_map_verifies(records, tmp_path):
    build_store(records, tmp_path / "store", SETTINGS, workers=1, initial_map_size=8192)
    assert verify_store(tmp_path / "store").ok


def test_fanned_out_shards_assemble_into_the_same_store(records, tmp_path):
    fan = tmp_path / "fan"
    first = build_store(records, fan, SETTINGS, workers=1, shards=2, shard_index=1)
    assert first.index is None and first.missing == ["train/shard-00000-of-00002.lmdb", "val/shard-00000-of-00002.lmdb"]
    with pytest.raises(StoreError, match="2 shards are not built yet"):
        build_store(records, fan, SETTINGS, workers=1, shards=2, assemble_only=True)
    second = build_store(records, fan, SETTINGS, workers=1, shards=2, shard_index=0)
    assert second.index is not None and second.missing == []
    (fan / INDEX_FILE).unlink()
    assembled = build_store(records, fan, SETTINGS, workers=1, shards=2, assemble_only=True)
    assert assembled.built == []
    whole = build_store(records, tmp_path / "whole", SETTINGS, workers=1, shards=2)
    assert shard_hashes(assembled.index) == shard_hashes(whole.index)
    assert assembled.index["counts"] == whole.index["counts"]
    assert verify_store(fan).ok


def test_worker_processes_build_the_same_store(tmp_path):
    records = tmp_path / "records"
    write_toy_records(records, n=80, heights=(16, 24), widths=(40, 160), seed=3)  # > 1 chunk per worker
    serial = build_store(records, tmp_path / "serial", SETTINGS, workers=1)
    parallel = build_store(records, tmp_path / "parallel", SETTINGS, workers=2)
    assert shard_hashes(serial.index) == shard_hashes(parallel.index)


def test_progress_callback_reaches_the_total(records, tmp_path):
    seen = []
    build_store(records, tmp_path / "store", SETTINGS, workers=1, callback=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 30) and seen[-1] == (30, 30)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cli_build_then_verify(records, tmp_path):
    store = tmp_path / "store"
    res = CliRunner().invoke(build_lmdb_cmd, [str(records), "--out", str(store), "--height", "32", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "in 30 · stored 30 · quarantined 0" in res.output
    assert "index.json" in res.output
    res = CliRunner().invoke(verify_cmd, [str(store)])
    assert res.exit_code == 0 and "ok:" in res.output
    res = CliRunner().invoke(build_lmdb_cmd, [str(records), "--out", str(store), "--height", "48", "--workers", "1"])
    assert res.exit_code == 1 and "--overwrite" in res.output and "Traceback" not in res.output


def test_cli_verify_names_shard_and_key_and_fails(records, tmp_path):
    store = tmp_path / "store"
    build_store(records, store, PreprocessSettings(height=32), workers=1)
    rel = _flip(store, "val", 1, lambda v: HEADER_SIZE + 7)
    res = CliRunner().invoke(verify_cmd, [str(store)])
    assert res.exit_code == 1
    assert f"shard {rel} key 000000001: CRC32 mismatch" in res.output


def test_cli_fan_out_options(records, tmp_path):
    store = tmp_path / "store"
    res = CliRunner().invoke(build_lmdb_cmd, [str(records), "--out", str(store), "--shard-index", "0", "--workers", "1"])
    assert res.exit_code == 2 and "--shards N" in res.output
    for i in (0, 1):
        res = CliRunner().invoke(
            build_lmdb_cmd, [str(records), "--out", str(store), "--num-shards", "2", "--shard-index", str(i),
                             "--height", "32", "--workers", "1"],
        )
        assert res.exit_code == 0, res.output
    assert "still missing" not in res.output and "wrote" in res.output
    assert verify_store(store).ok


REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cinnamon-0916"


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "labels.json").is_file(),
                    reason=f"real Cinnamon lines not found at {REAL_DATA} (only present inside the vhr workplace)")
def test_real_lines_build_and_verify(tmp_path):
    from vhrdata.ingest import ingest
    from vhrdata.split import split_records

    ingest(REAL_DATA, tmp_path / "records")
    split_records(tmp_path / "records", ratios=(0.9, 0.1, 0.0), group="image")
    df = read_records(tmp_path / "records", require_split=True)
    result = build_store(tmp_path / "records", tmp_path / "store")
    counts = result.index["counts"]
    assert counts["in"] == len(df) == counts["stored"] + counts["quarantined"]
    for name, info in result.index["splits"].items():
        assert info["in"] == int((df["split"] == name).sum())
    report = verify_store(tmp_path / "store")
    assert report.ok, report.faults
    assert report.records == counts["stored"]
