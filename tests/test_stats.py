"""vhrdata stats: the numbers, the files, the CLI. Data is a handful of tiny PNGs built in tmp_path."""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vhrdata.cli import main
from vhrdata.errors import StatsError
from vhrdata.quarantine import QuarantineItem, write_quarantine
from vhrdata.records import write_records
from vhrdata.stats import (
    compute_stats,
    detect_input,
    padding_fraction,
    records_stats,
    render_html,
    render_markdown,
    write_report,
)
from vhrdata.stats.compute import histogram_edges
from vhrdata.stats.vietnamese import (
    syllable_tone,
    tone_counts,
    tone_placement_styles,
    vowel_diacritic_counts,
)
from vhrdata.text import TONE_NAMES

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cinnamon-0916"

# (writer, split, text): "ẵ" occurs only in val, "Q" three times in train and once in test.
LINES = [
    ("w1", "train", "Số 12 Quận Hoà Bình"),
    ("w1", "train", "Phường Quỳnh Mai, Hà Nội"),
    ("w1", "train", "Thôn Trung, Xã Quảng Phú"),
    ("w2", "train", "Đường Nguyễn Trãi, thuỷ"),
    ("w2", "train", "Huyện Hòa Vang, Đà Lạt"),
    (None, "train", "ấp 3, Tỉnh Bến Tre"),
    ("w3", "val", "Xã ẵm Lộc, Tỉnh Hà Tĩnh"),
    ("w3", "val", "Khu 4, Phường Hoà Minh"),
    ("w4", "test", "Quận 5, TP Hồ Chí Minh"),
]


def _png(path: Path, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 240, np.uint8)
    img[rng.integers(0, height, 40), rng.integers(0, width, 40)] = 10
    Image.fromarray(img).save(path)
    return path.read_bytes()


def make_records(directory: Path, lines=LINES, *, split: bool = True, real_files: bool = True) -> pd.DataFrame:
    """Write records.parquet (and images) for `lines`; sizes in the frame are 10× the files' sizes."""
    img_dir = directory / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (writer, sp, text) in enumerate(lines):
        path = img_dir / f"line{i}.png"
        w, h = 60 + 10 * i, 12 + i % 3
        data = _png(path, w, h, i) if real_files else b""
        rows.append({
            "id": f"line{i}", "source": "kalapa" if i % 2 else "manifest", "writer": writer, "path": str(path),
            "text": text, "raw_text": text, "width": 10 * w, "height": 10 * h,
            "sha1": hashlib.sha1(data or str(i).encode()).hexdigest(), "origin": f"labels.txt:{i + 1}",
            "split": sp,
        })
    df = pd.DataFrame(rows)
    if not split:
        df = df.drop(columns="split")
    write_records(df, directory, meta={"layout": "test"})
    return df


@pytest.fixture
def records_dir(tmp_path) -> Path:
    d = tmp_path / "records"
    make_records(d)
    write_quarantine(
        [QuarantineItem(reason="empty_label", message="label is empty", id="x1"),
         QuarantineItem(reason="empty_label", message="label is empty", id="x2"),
         QuarantineItem(reason="missing_image", message="no such file", id="x3")],
        d / "quarantine.jsonl",
    )
    (d / "ingest.json").write_text(json.dumps({"counts": {"in": 12, "kept": 9, "quarantined": 3}}))
    return d


# ---------------------------------------------------------------- Vietnamese analysis

@pytest.mark.parametrize(
    "word,tone",
    [("Nguyễn", "ngã"), ("Văn", "ngang"), ("Huỳnh", "huyền"), ("thuở", "hỏi"), ("Bắc", "sắc"), ("Lộc", "nặng"),
     ("hoà", "huyền"), ("TP", None), ("hóà", "mixed")],
)
def test_syllable_tone(word, tone):
    assert syllable_tone(word) == tone


def test_tone_counts_per_syllable_and_nfd_input():
    text = unicodedata.normalize("NFD", "Nguyễn Văn Hoà, 12 TP Huỳnh ạ")
    counts = tone_counts([text])
    assert list(counts)[:6] == list(TONE_NAMES)
    assert counts == {"ngang": 1, "huyền": 2, "sắc": 0, "hỏi": 0, "ngã": 1, "nặng": 1}


def test_vowel_diacritic_counts_fold_case_and_ignore_tone():
    counts = vowel_diacritic_counts(["Đường Ấp đất Ơ"])
    assert counts == {"â": 2, "ê": 0, "ô": 0, "ă": 0, "ơ": 2, "ư": 1, "đ": 2}


def test_tone_placement_styles_counts_only_style_sensitive_words():
    res = tone_placement_styles(["Hòa hoà Thủy thuỷ Khoẻ", "Quý hoàng Quỳnh Nguyễn"])
    assert (res["old"], res["new"]) == (2, 3)
    assert set(res["examples"]["old"]) == {"Hòa", "Thủy"}
    assert set(res["examples"]["new"]) == {"hoà", "thuỷ", "Khoẻ"}


# ---------------------------------------------------------------- pure helpers

@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1e4, allow_nan=False), min_size=1, max_size=60),
       st.booleans())
def test_histogram_edges_keep_every_value(values, integer):
    v = np.round(values) if integer else np.asarray(values)
    edges = histogram_edges(v, integer=integer)
    assert np.histogram(v, bins=edges)[0].sum() == len(v)


def test_padding_fraction():
    widths = np.array([1, 3, 2, 2])
    assert padding_fraction(widths, [np.array([0, 1]), np.array([2, 3])]) == pytest.approx(1 - 8 / 10)
    assert padding_fraction(widths, [np.array([2, 3]), np.array([0])]) == 0.0
    assert padding_fraction(widths, []) == 0.0


# ---------------------------------------------------------------- report content

def test_counts_writers_sources(records_dir):
    data = compute_stats(records_dir, samples_per_split=1).data
    c = data["counts"]
    assert c["total"] == len(LINES)
    assert c["by_split"] == {"train": 6, "val": 2, "test": 1}
    assert data["splits"] == ["train", "val", "test"]
    assert c["by_source"] == {"kalapa": 4, "manifest": 5}
    assert c["writers"] == 4 and c["lines_without_writer"] == 1
    assert c["by_writer"] == {"w1": 3, "w2": 2, "w3": 2, "w4": 1}
    assert c["writers_per_split"] == {"train": 2, "val": 1, "test": 1}
    assert sum(c["lines_per_writer"]["counts"]) == 4
    assert c["lines_per_writer"]["summary"]["max"] == 3


def test_sizes_come_from_the_records_not_the_files(records_dir):
    data = compute_stats(records_dir, samples_per_split=0).data
    widths = [10 * (60 + 10 * i) for i in range(len(LINES))]
    s = data["image_sizes"]["width"]["summary"]
    assert (s["all"]["min"], s["all"]["max"]) == (min(widths), max(widths))
    assert s["train"]["max"] == widths[5]
    assert sum(data["image_sizes"]["aspect"]["counts"]["all"]) == len(LINES)
    lengths = [len(t) for _, _, t in LINES]
    assert data["label_lengths"]["chars"]["summary"]["all"]["max"] == max(lengths)
    assert data["label_lengths"]["words"]["summary"]["val"]["n"] == 2


def test_only_thumbnails_are_decoded(tmp_path):
    # The image files are empty: any decode beyond the (disabled) samples would fail.
    d = tmp_path / "r"
    make_records(d, real_files=False)
    report = compute_stats(d, samples_per_split=0)
    assert report.thumbnails == {}
    assert report.data["counts"]["total"] == len(LINES)


def test_character_table_and_tones_per_split(records_dir):
    data = compute_stats(records_dir, samples_per_split=0).data
    table = {r["char"]: r for r in data["characters"]["table"]}
    all_text = "".join(t for _, _, t in LINES)
    assert data["characters"]["distinct"] == len(set(all_text))
    assert table["Q"]["count"] == all_text.count("Q")
    assert table["Q"]["by_split"] == {"train": 3, "val": 0, "test": 1}
    assert table[" "]["label"] == "␣"
    counts = [r["count"] for r in data["characters"]["table"]]
    assert counts == sorted(counts, reverse=True)
    tones = data["vietnamese"]["tones"]
    assert set(tones) == {"all", "train", "val", "test"}
    assert tones["val"] == tone_counts([t for _, s, t in LINES if s == "val"])
    assert data["vietnamese"]["vowel_diacritics"]["train"]["đ"] == 2
    tp = data["vietnamese"]["tone_placement"]
    assert (tp["old"], tp["new"]) == (1, 3)  # Hòa; Hoà ×2, thuỷ


def test_charset_coverage_lists_rare_and_missing_characters_with_examples(records_dir):
    cov = compute_stats(records_dir, samples_per_split=0).data["coverage"]
    chars = {c["char"]: c for c in cov["chars"]}
    assert chars["ẵ"]["train"] == 0 and chars["ẵ"]["val"] == 1
    assert chars["ẵ"]["examples"] == [{"split": "val", "id": "line6", "text": LINES[6][2]}]
    assert chars["Q"]["train"] == 3 and chars["Q"]["test"] == 1
    assert "a" not in chars  # many times in train
    assert cov["chars"][0]["char"] in {c for c, v in chars.items() if v["train"] == 0}
    assert cov["never_in_train"] == sum(1 for c in cov["chars"] if c["train"] == 0)
    assert 1 <= cov["eval_lines_affected"] <= 3


def test_min_train_count_moves_the_threshold(records_dir):
    cov = compute_stats(records_dir, samples_per_split=0, min_train_count=1).data["coverage"]
    assert all(c["train"] == 0 for c in cov["chars"])
    assert "Q" not in {c["char"] for c in cov["chars"]}


def test_quarantine_and_ingest_counts(records_dir):
    data = compute_stats(records_dir, samples_per_split=0).data
    q = data["quarantine"]
    assert q["total"] == 3
    assert q["by_reason"] == {"empty_label": 2, "missing_image": 1}
    assert [e["id"] for e in q["examples"]["empty_label"]] == ["x1", "x2"]
    assert data["ingest"]["counts"]["quarantined"] == 3


def test_leakage_is_recomputed_without_split_json(tmp_path):
    d = tmp_path / "r"
    lines = [("w1", "train", "a b"), ("w1", "val", "c d"), ("w2", "test", "a b")]
    make_records(d, lines)
    leak = compute_stats(d, samples_per_split=0).data["leakage"]
    assert leak["writer_leaks"]["count"] == 1
    assert leak["shared_texts"]["count"] == 1
    assert leak["ok"] is False


def test_leakage_and_split_settings_come_from_split_json(records_dir):
    (records_dir / "split.json").write_text(json.dumps(
        {"seed": 7, "group": "writer", "leakage": {"writer_leaks": {"count": 0, "examples": []},
                                                   "image_leaks": {"count": 0, "examples": []},
                                                   "shared_texts": {"count": 2, "lines": 5, "examples": []},
                                                   "ok": True}}))
    data = compute_stats(records_dir, samples_per_split=0).data
    assert data["split"] == {"seed": 7, "group": "writer"}
    assert data["leakage"]["shared_texts"]["lines"] == 5
    assert "texts shared across splits (5 lines)" in render_markdown(compute_stats(records_dir, samples_per_split=0))


def test_unsplit_records(tmp_path):
    d = tmp_path / "r"
    make_records(d, split=False)
    report = compute_stats(d, samples_per_split=2)
    data = report.data
    assert data["splits"] == [] and data["counts"]["by_split"] == {}
    assert "note" in data["coverage"] and data["leakage"] is None
    assert list(data["samples"]) == ["all"] and len(report.thumbnails) == 2
    assert "Not split yet" in render_markdown(report)


def test_samples_are_thumbnails_of_the_chosen_records(records_dir):
    report = compute_stats(records_dir, samples_per_split=2, thumbnail_width=40, seed=3)
    samples = report.data["samples"]
    assert [len(samples[s]) for s in ("train", "val", "test")] == [2, 2, 1]
    by_id = {f"line{i}": (sp, t) for i, (_, sp, t) in enumerate(LINES)}
    for split, entries in samples.items():
        for e in entries:
            assert by_id[e["id"]] == (split, e["text"])
            png = Image.open(io.BytesIO(report.thumbnails[e["thumbnail"]]))
            assert png.width <= 40 and png.mode == "L"
    again = compute_stats(records_dir, samples_per_split=2, thumbnail_width=40, seed=3)
    assert again.data["samples"] == samples


def test_missing_sample_image_is_logged_not_fatal(records_dir):
    for p in (records_dir / "images").iterdir():
        p.unlink()
    report = compute_stats(records_dir, samples_per_split=1)
    assert report.thumbnails == {}
    assert all(e["thumbnail"] is None for es in report.data["samples"].values() for e in es)
    assert "(no image)" in render_html(report)


def test_callback_reports_progress(records_dir):
    calls = []
    compute_stats(records_dir, samples_per_split=0, callback=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == list(range(1, len(calls) + 1))


def test_records_stats_needs_size_columns():
    with pytest.raises(Exception, match="width"):
        records_stats(pd.DataFrame({"id": ["a"], "text": ["x"], "height": [3]}))


# ---------------------------------------------------------------- files

def test_write_report_files(records_dir, tmp_path):
    report = compute_stats(records_dir, samples_per_split=1)
    out = tmp_path / "report"
    written = write_report(report, out)
    assert set(written) == {"json", "md", "html"}
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == 1 and data["input"]["kind"] == "records"
    assert data["counts"]["total"] == len(LINES)

    md = (out / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\((assets/[^)]+)\)", md)
    assert linked and all((out / p).is_file() for p in linked)
    assert sum(p.startswith("assets/train_") for p in linked) == 1
    for name in TONE_NAMES:
        assert name in md

    html = (out / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', html)
    # Self-contained: every image is a data URI (plots + one thumbnail per split).
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == len(linked)
    assert "<script" not in html and "assets/" not in html
    assert "ẵ" in html and "Hòa" in html


def test_write_report_formats(records_dir, tmp_path):
    report = compute_stats(records_dir, samples_per_split=0)
    written = write_report(report, tmp_path / "o", formats=("json",))
    assert list(written) == ["json"] and not (tmp_path / "o" / "report.html").exists()
    with pytest.raises(ValueError, match="formats"):
        write_report(report, tmp_path / "o", formats=("pdf",))


def test_detect_input(records_dir, tmp_path):
    assert detect_input(records_dir) == "records"
    assert detect_input(records_dir / "records.parquet") == "records"
    (tmp_path / "empty").mkdir()
    with pytest.raises(StatsError, match="vhrdata ingest"):
        detect_input(tmp_path / "empty")
    with pytest.raises(StatsError, match="does not exist"):
        detect_input(tmp_path / "nope")


# ---------------------------------------------------------------- CLI

def test_cli_stats(records_dir, tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["stats", str(records_dir), "--out", str(out), "--samples", "1"])
    assert res.exit_code == 0, res.output
    assert "9 lines (train 6 · val 2 · test 1)" in res.output
    assert "quarantined 3" in res.output
    assert all((out / f).is_file() for f in ("report.json", "report.md", "report.html"))


def test_cli_stats_help_has_example():
    res = CliRunner().invoke(main, ["stats", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output


@pytest.mark.parametrize(
    "args,message",
    [(["--format", "pdf"], "formats must be among"), (["--batch-sizes", "8,x"], "comma-separated"),
     (["--batch-sizes", "0"], "comma-separated")],
)
def test_cli_stats_bad_options(records_dir, tmp_path, args, message):
    res = CliRunner().invoke(main, ["stats", str(records_dir), "--out", str(tmp_path / "o")] + args)
    assert res.exit_code == 2 and message in res.output


def test_cli_stats_refuses_a_folder_without_records(tmp_path):
    res = CliRunner().invoke(main, ["stats", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "records.parquet" in res.output and "Traceback" not in res.output


# ---------------------------------------------------------------- stores

# Line 0 is 60×12 px: 160 px wide at height 32, 40 CTC frames at downsample 4, too few for this label.
STORE_LINES = [("w1", "train", "Hà Nội, " * 7)] + LINES[1:]


def build_test_store(tmp_path: Path) -> tuple[Path, Path]:
    from vhrdata.preprocess import PreprocessSettings
    from vhrdata.store import build_store

    rec = tmp_path / "records"
    make_records(rec, STORE_LINES)
    store = tmp_path / "store"
    build_store(rec, store, PreprocessSettings(height=32), downsample=4, workers=0)
    return rec, store


def test_store_report(tmp_path):
    from vhrdata.store import open_store

    rec, store_dir = build_test_store(tmp_path)
    assert detect_input(store_dir) == "store"
    report = compute_stats(store_dir, batch_sizes=(2, 4), samples_per_split=1)
    data = report.data
    assert data["input"]["kind"] == "store" and data["input"]["records"] == str(rec.resolve())
    # The report describes the stored lines: the infeasible one is gone, and counted as quarantined.
    assert data["counts"]["by_split"] == {"train": 5, "val": 2, "test": 1}
    assert data["image_sizes"]["width"]["summary"]["all"]["n"] == len(STORE_LINES) - 1
    st = data["store"]
    ctc = st["ctc"]["by_split"]
    assert (ctc["train"]["lines"], ctc["train"]["feasible"], ctc["train"]["infeasible"]) == (6, 5, 1)
    assert ctc["val"]["infeasible"] == 0 and ctc["val"]["min_slack"] >= 0
    assert [e["id"] for e in st["ctc"]["examples"]] == ["line0"]
    assert data["quarantine"]["by_stage"] == {"ingest": 0, "store": 1}
    assert data["quarantine"]["by_reason"] == {"ctc_infeasible": 1}
    opened = open_store(store_dir)
    assert st["widths"]["summary"]["val"]["max"] == int(opened.split("val").widths.max())
    for split, by_bs in st["padding"]["by_split"].items():
        assert set(by_bs) == {"2", "4"}
        assert all(0 <= v[k] < 1 for v in by_bs.values() for k in ("shuffled", "bucketed"))
    assert st["padding"]["by_split"]["train"]["2"]["shuffled"] > 0  # the stored widths differ
    # Thumbnails show what the model sees: preprocessed, 32 px high.
    png = report.thumbnails[data["samples"]["train"][0]["thumbnail"]]
    assert Image.open(io.BytesIO(png)).height == 32
    html = render_html(report)
    assert "CTC feasibility" in html and "Padding per batch" in html


def test_store_without_its_records_folder(tmp_path):
    import shutil

    rec, store_dir = build_test_store(tmp_path)
    shutil.rmtree(rec)
    data = compute_stats(store_dir, samples_per_split=1).data
    assert data["input"]["records"] is None and "store alone" in data["input"]["records_note"]
    assert data["counts"]["total"] == len(STORE_LINES) - 1
    assert data["image_sizes"]["height"]["summary"]["all"]["max"] == 32
    assert data["vietnamese"]["tone_placement_source"] == "text"
    assert data["leakage"] is None and "lack the columns" in render_markdown(compute_stats(store_dir))


def test_cli_stats_on_a_store(tmp_path):
    _, store_dir = build_test_store(tmp_path)
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["stats", str(store_dir), "--out", str(out), "--batch-sizes", "2,4"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["store"]["downsample"] == 4


# ---------------------------------------------------------------- real lines

@pytest.mark.real
@pytest.mark.skipif(not (REAL_DATA / "labels.json").is_file(),
                    reason=f"real Cinnamon lines not found at {REAL_DATA} (only present inside the vhr workplace)")
def test_real_cinnamon_lines(tmp_path):
    runner = CliRunner()
    rec = tmp_path / "rec"
    assert runner.invoke(main, ["ingest", str(REAL_DATA), "--out", str(rec)]).exit_code == 0
    assert runner.invoke(main, ["split", str(rec), "--group", "image"]).exit_code == 0
    res = runner.invoke(main, ["stats", str(rec), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text(encoding="utf-8"))
    labels = json.loads((REAL_DATA / "labels.json").read_text(encoding="utf-8"))
    assert data["counts"]["total"] == len(labels)
    assert data["characters"]["distinct"] == len(set("".join(labels.values())))
    assert sum(data["counts"]["by_split"].values()) == len(labels)
    tp = data["vietnamese"]["tone_placement"]
    assert tp["old"] > 0 and tp["new"] > 0
