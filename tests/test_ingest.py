import json
import shutil
import unicodedata

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import REAL_DATA, png_header_only, requires_real_data, write_line_image
from vhrdata.cli import main
from vhrdata.errors import LayoutError, OutputNotWritable, RecordsError, SourceNotFound
from vhrdata.images import SizeLimits
from vhrdata.ingest import IngestSettings, ingest
from vhrdata.quarantine import read_quarantine
from vhrdata.records import read_records, write_records


def make_kalapa(root, writers=("w1", "w2"), per_writer=3):
    for wi, w in enumerate(writers):
        lines = []
        for i in range(per_writer):
            write_line_image(root / "images" / w / f"{i}.jpg", seed=wi * 100 + i)
            lines.append(f"{w}/{i}.jpg\tSố {i} đường Trần Phú, Hà Nội")
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{w}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_broken_kalapa(root):
    """A kalapa folder with 3 good lines and one crafted example of every fault."""
    img = root / "images" / "w1"
    good = [write_line_image(img / f"g{i}.jpg", seed=i) for i in range(3)]
    (img / "zero.jpg").parent.mkdir(parents=True, exist_ok=True)
    (img / "zero.jpg").write_bytes(b"")
    data = write_line_image(img / "full.png", seed=50).read_bytes()
    (img / "trunc.png").write_bytes(data[: len(data) // 2])
    (img / "text.jpg").write_text("this is not an image")
    write_line_image(img / "tiny.png", width=4, height=4, seed=51)
    (img / "huge.png").write_bytes(png_header_only(40_000, 30_000))
    shutil.copy(good[0], img / "copy.jpg")
    write_line_image(img / "nfd.jpg", seed=52)
    write_line_image(img / "empty.jpg", seed=53)
    nfd = unicodedata.normalize("NFD", "Phường Hòa Thuận, Quận Hải Châu")
    lines = [
        "w1/g0.jpg\tSố 1 Lê Lợi", "w1/g1.jpg\tSố 2 Lê Lợi", "w1/g2.jpg\tSố 3 Lê Lợi",
        "w1/missing.jpg\tkhông có ảnh", "w1/zero.jpg\tảnh rỗng", "w1/trunc.png\tảnh cụt",
        "w1/text.jpg\tkhông phải ảnh", "w1/tiny.png\tảnh nhỏ", "w1/huge.png\tảnh khổng lồ",
        "w1/copy.jpg\tbản sao", "w1/g0.jpg\tid trùng", "w1/empty.jpg\t   ",
        "w1/nfd.jpg\t" + nfd, "w1/notab.jpg Số 9 không có tab",
    ]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "w1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # a second writer whose annotation file is not UTF-8 (Windows-1258 bytes)
    write_line_image(root / "images" / "w2" / "0.jpg", seed=60)
    (root / "annotations" / "w2.txt").write_bytes("w2/0.jpg\tHòa Bình\n".encode("latin-1"))
    return root


EXPECTED_REASONS = {
    "missing_image": 1, "empty_file": 1, "truncated_image": 1, "not_an_image": 1, "image_too_small": 1,
    "image_too_large": 1, "duplicate_image": 1, "duplicate_id": 1, "empty_label": 1, "no_tab": 1,
    "bad_encoding": 1,
}


def test_every_fault_is_quarantined_and_counts_reconcile(tmp_path):
    src = make_broken_kalapa(tmp_path / "src")
    out = tmp_path / "out"
    result = ingest(src, out)
    assert result.by_reason == EXPECTED_REASONS
    assert result.n_in == result.kept + result.quarantined == 15
    df = read_records(out)
    assert sorted(df["id"]) == ["w1/g0.jpg", "w1/g1.jpg", "w1/g2.jpg", "w1/nfd.jpg"]
    nfd_row = df.set_index("id").loc["w1/nfd.jpg"]
    assert nfd_row["text"] == "Phường Hoà Thuận, Quận Hải Châu"
    assert unicodedata.is_normalized("NFC", nfd_row["text"]) and nfd_row["raw_text"] != nfd_row["text"]
    q = read_quarantine(out)
    assert len(q) == result.quarantined
    by = {item["reason"]: item for item in q}
    assert by["duplicate_image"]["duplicate_of"] == "w1/g0.jpg"
    assert "w2.txt" in by["bad_encoding"]["message"] and "offset" in by["bad_encoding"]["message"]
    assert "--encoding" in by["bad_encoding"]["message"]
    assert "header" in by["image_too_large"]["message"]
    report = json.loads((out / "ingest.json").read_text())
    assert report["counts"] == {"in": 15, "kept": 4, "quarantined": 11, "by_reason": EXPECTED_REASONS}


def encode_cp1258(text):
    """Windows-1258 has few precomposed Vietnamese letters; others are written base + combining mark."""
    out = b""
    for ch in text:
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            nfd = unicodedata.normalize("NFD", ch)
            try:
                out += nfd.encode("cp1258")
            except UnicodeEncodeError:  # ư/ơ + tone: keep the precomposed ư/ơ, add the tone mark
                out += unicodedata.normalize("NFC", nfd[:2]).encode("cp1258") + nfd[2:].encode("cp1258")
    return out


def test_encoding_option_reads_non_utf8_annotations(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=2)
    ann = src / "annotations" / "w1.txt"
    ann.write_bytes(encode_cp1258("w1/0.jpg\tHòa Bình\nw1/1.jpg\tThủ Đức\n"))
    assert ingest(src, tmp_path / "a").by_reason == {"bad_encoding": 2}
    result = ingest(src, tmp_path / "b", IngestSettings(encoding="cp1258"))
    assert (result.kept, result.quarantined) == (2, 0)
    assert sorted(read_records(tmp_path / "b")["text"]) == ["Hoà Bình", "Thủ Đức"]


def test_size_limits_are_configurable(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=2)
    result = ingest(src, tmp_path / "out", IngestSettings(limits=SizeLimits(max_width=100)))
    assert result.by_reason == {"image_too_large": 2}


def test_kalapa_layout(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=("w1", "w2", "w3"), per_writer=4)
    write_line_image(src / "images" / "w1" / "orphan.jpg", seed=999)
    result = ingest(src, tmp_path / "out")
    assert (result.layout, result.kept, result.quarantined) == ("kalapa", 12, 0)
    assert result.info["unannotated_images"] == 1
    df = read_records(tmp_path / "out")
    assert sorted(df["writer"].unique()) == ["w1", "w2", "w3"]
    assert set(df.columns) >= {"id", "source", "writer", "path", "text", "raw_text", "width", "height", "sha1"}
    assert (df["width"] == 160).all() and (df["height"] == 32).all()
    assert df["path"].map(lambda p: p.startswith("/")).all()


def test_cinnamon_layout_detects_duplicate_keys(tmp_path):
    src = tmp_path / "cin"
    for i in range(3):
        write_line_image(src / f"{i:04d}_samples.png", seed=i)
    (src / "labels.json").write_text(
        '{"0000_samples.png": "Số 1", "0001_samples.png": "Số 2", "0002_samples.png": 7, '
        '"0000_samples.png": "Số 1 lần nữa"}', encoding="utf-8")
    result = ingest(src, tmp_path / "out")
    assert result.layout == "cinnamon"
    assert result.by_reason == {"duplicate_id": 1, "malformed_line": 1}
    df = read_records(tmp_path / "out")
    assert df["writer"].isna().all() and len(df) == 2


def test_iam_layout_with_and_without_forms(tmp_path):
    src = tmp_path / "iam"
    lines = ["# comment", "#"]
    forms = []
    for f, writer in (("a01-000u", "000"), ("a01-001u", "000"), ("b02-000", "151")):
        forms.append(f"{f} {writer} 2 prt 7 5 52 36")
        for n in range(2):
            line_id = f"{f}-{n:02d}"
            write_line_image(src / "lines" / f.split("-")[0] / f / f"{line_id}.png", seed=hash(line_id) % 1000)
            lines.append(f"{line_id} ok 154 19 408 746 1661 89 Số|{n}|&quot;Hòa&quot;")
    lines.append("broken line")
    (src / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ingest(src, tmp_path / "out")
    assert result.info["writer_source"].startswith("form id")
    assert (result.kept, result.by_reason) == (6, {"malformed_line": 1})
    (src / "forms.txt").write_text("\n".join(forms) + "\n", encoding="utf-8")
    result = ingest(src, tmp_path / "out2")
    assert result.info["writer_source"] == "forms.txt"
    df = read_records(tmp_path / "out2").set_index("id")
    assert df.loc["a01-000u-00", "writer"] == df.loc["a01-001u-01", "writer"] == "000"
    assert df.loc["b02-000-01", "text"] == 'Số 1 "Hoà"'


def test_iam_writer_falls_back_to_form_id(tmp_path):
    src = tmp_path / "iam"
    write_line_image(src / "lines" / "a01" / "a01-000u" / "a01-000u-00.png")
    (src / "lines.txt").write_text("a01-000u-00 ok 154 19 408 746 1661 89 Xin|chào\n", encoding="utf-8")
    result = ingest(src, tmp_path / "out")
    assert result.info["writer_source"].startswith("form id")
    assert read_records(tmp_path / "out")["writer"].tolist() == ["a01-000u"]


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_manifest_layout(tmp_path, suffix, sep):
    root = tmp_path / "m"
    write_line_image(root / "img" / "a.png", seed=1)
    write_line_image(root / "img" / "b.png", seed=2)
    manifest = root / f"list{suffix}"
    manifest.write_text(f"path{sep}text{sep}writer\nimg/a.png{sep}Xin chào{sep}w1\nimg/b.png{sep}{sep}w2\n",
                        encoding="utf-8")
    result = ingest(manifest, tmp_path / "out")
    assert (result.layout, result.kept, result.by_reason) == ("manifest", 1, {"empty_label": 1})
    assert read_records(tmp_path / "out")["writer"].tolist() == ["w1"]


def test_parquet_manifest(tmp_path):
    root = tmp_path / "m"
    write_line_image(root / "a.png", seed=1)
    pd.DataFrame({"path": ["a.png"], "text": ["Hà Nội"]}).to_parquet(root / "list.parquet")
    result = ingest(root / "list.parquet", tmp_path / "out")
    assert result.kept == 1 and read_records(tmp_path / "out")["writer"].isna().all()


def test_manifest_without_header_is_refused(tmp_path):
    (tmp_path / "list.csv").write_text("a.png,Xin chào\n", encoding="utf-8")
    with pytest.raises(LayoutError, match="header row"):
        ingest(tmp_path / "list.csv", tmp_path / "out")


def test_fatal_errors(tmp_path):
    with pytest.raises(SourceNotFound):
        ingest(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="no dataset layout"):
        ingest(tmp_path / "empty", tmp_path / "out")
    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=1)
    (src / "labels.json").write_text("{}")
    with pytest.raises(LayoutError, match="several layouts fit .*kalapa, cinnamon"):
        ingest(src, tmp_path / "out")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritable):
        ingest(src, blocker / "out", IngestSettings(layout="kalapa"))


def test_records_schema_version_is_checked(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=1)
    ingest(src, tmp_path / "out")
    df = read_records(tmp_path / "out")
    df.to_parquet(tmp_path / "out" / "records.parquet")  # written without vhr metadata
    with pytest.raises(RecordsError, match="not written by vhr"):
        read_records(tmp_path / "out")
    write_records(df, tmp_path / "out")
    import pyarrow.parquet as pq
    table = pq.read_table(tmp_path / "out" / "records.parquet")
    table = table.replace_schema_metadata({b"vhr.records": b'{"schema_version": 99}'})
    pq.write_table(table, tmp_path / "out" / "records.parquet")
    with pytest.raises(RecordsError, match="schema version 99"):
        read_records(tmp_path / "out")


def test_cli_ingest_prints_reconciled_counts(tmp_path):
    src = make_broken_kalapa(tmp_path / "src")
    res = CliRunner().invoke(main, ["ingest", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "in 15 · kept 4 · quarantined 11" in res.output
    assert "  bad_encoding: 1" in res.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["ingest", "/definitely/not/here", "--out", "x"], "source not found"),
        (["ingest", ".", "--out", "x", "--layout", "iam"], "missing lines.txt"),
    ],
)
def test_cli_fatal_errors_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1
    assert message in res.output and "Traceback" not in res.output


def test_cli_unwritable_output(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=1)
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(main, ["ingest", str(src), "--out", str(tmp_path / "file" / "out")])
    assert res.exit_code == 1 and "cannot write to output folder" in res.output


@pytest.mark.real
@requires_real_data
def test_real_cinnamon_lines_ingest_cleanly(tmp_path):
    result = ingest(REAL_DATA, tmp_path / "out")
    assert (result.layout, result.n_in, result.kept, result.quarantined) == ("cinnamon", 1500, 1500, 0)


def test_manifest_short_row_is_quarantined(tmp_path):
    root = tmp_path / "m"
    write_line_image(root / "a.png", seed=1)
    (root / "list.csv").write_text("path,text\na.png,Hà Nội\nb.png\n", encoding="utf-8")
    result = ingest(root / "list.csv", tmp_path / "out")
    assert (result.kept, result.by_reason) == (1, {"malformed_line": 1})
    assert "list.csv:3" in read_quarantine(tmp_path / "out")[0]["message"]


def test_allow_outside_setting_and_byte_cap(tmp_path):
    write_line_image(tmp_path / "outside.jpg", seed=7)
    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=2)
    with open(src / "annotations" / "w1.txt", "a", encoding="utf-8") as f:
        f.write("../../outside.jpg\tSố 7\n\n\n")
    result = ingest(src, tmp_path / "a")
    assert (result.kept, result.by_reason, result.info["blank_lines"]) == (2, {"path_outside_dataset": 1}, 2)
    assert ingest(src, tmp_path / "b", IngestSettings(allow_outside=True)).kept == 3
    assert all((src / "images" / "w1" / f"{i}.jpg").stat().st_size > 300 for i in range(2))
    result = ingest(src, tmp_path / "c", IngestSettings(allow_outside=True, max_file_bytes=300))
    assert result.by_reason == {"file_too_large": 3}
    # the annotation file itself is capped too: it stands for its lines as one quarantined item
    result = ingest(src, tmp_path / "d", IngestSettings(max_file_bytes=100))
    assert result.by_reason == {"file_too_large": 1}
    assert "w1.txt" in read_quarantine(tmp_path / "d")[0]["message"]
    with pytest.raises(ValueError, match="max_file_bytes"):
        IngestSettings(max_file_bytes=0)


def test_report_names_the_files_it_describes(tmp_path):
    from vhrdata.ingest import verify_output

    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=2)
    ingest(src, tmp_path / "out")
    verify_output(tmp_path / "out")
    # only the lock file stays (like a store's .build.lock): no staging folder, no .tmp file
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == [".ingest.lock"]
    (tmp_path / "out" / "quarantine.jsonl").write_text('{"reason": "empty_label"}\n', encoding="utf-8")
    with pytest.raises(RecordsError, match="quarantine.jsonl is not the file ingest.json describes"):
        verify_output(tmp_path / "out")


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=("w1",), per_writer=1)
    dead = 999_999_999  # above any pid_max, so no process has it
    (tmp_path / "out" / f".ingest-tmp-{dead}").mkdir(parents=True)
    (tmp_path / "out" / f".ingest-tmp-{dead}" / "records.parquet").write_bytes(b"half")
    ingest(src, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".ingest.lock", "ingest.json",
                                                                   "quarantine.jsonl", "records.parquet"]
