"""Fuzzing ingest's text formats with Hypothesis (issue 10 §6).

Random annotation files, CSV/TSV manifests and labels.json contents: random bytes, quotes, tabs, CR/LF,
byte-order marks and paths. Invariants on every example:
- ingest raises nothing but VhrError subclasses;
- in = kept + quarantined, in the result and in the written files;
- every kept label is its source field after `clean_text`, and every kept image lies inside the dataset.

The runs are derandomized and use no example database, so CI sees the same examples every time; the
example counts keep the whole module at about 30 s on one core.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import write_line_image
from vhrdata.errors import VhrError
from vhrdata.ingest import IngestSettings, ingest, verify_output
from vhrdata.quarantine import read_quarantine
from vhrdata.raw_formats import is_inside
from vhrdata.records import read_records
from vhrdata.text import clean_text

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_RAW = settings(FUZZ, max_examples=200)
# Duplicate images are kept so that each row's own label can be checked: all rows share a few images.
NO_DEDUPE = IngestSettings(dedupe_images=False, workers=1)

_PNG = None


def png_bytes() -> bytes:
    global _PNG
    if _PNG is None:
        with tempfile.TemporaryDirectory() as d:
            _PNG = write_line_image(Path(d) / "x.png", seed=3).read_bytes()
    return _PNG


# Characters that break parsers: separators, quotes, line breaks of every kind, BOMs, NULs, zero-width and
# combining marks, and Vietnamese letters in NFC and NFD.
HOSTILE_CHARS = list(',"\'\t\r\n \\/.:{}[]') + [
    "\ufeff", "\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u200b", "\u200d", "\u0301", "\u0323",
    "\u0303", "ố", "ư", "ơ", "đ", "Đ", "o\u0302\u0301", "a", "Z", "1",
]
WORDS = ["Số 12", "Phường Hàng Bông", "Hoà", "thuỷ", "Nguyễn", "\"Huế\"", "a,b", "x\ty"]
hostile_text = st.lists(st.sampled_from(WORDS) | st.sampled_from(HOSTILE_CHARS) | st.characters(codec="utf-8"),
                        max_size=16).map("".join)
one_line_text = hostile_text.map(lambda t: t.replace("\r", "").replace("\n", ""))
tsv_text = one_line_text.map(lambda t: t.replace("\t", " "))
# Fixed paths three times in four: good ones, a symlink inside, one to /dev/zero, a FIFO, paths that leave
# the dataset (the image ../x.png and ../../x.png exists outside it), and malformed ones.
FIXED_PATHS = ["img/0.png", "img/1.png", "img/link.png", "img/0.png", "img/1.png", "img/missing.png", "../x.png",
               "../../x.png", "/etc/hostname", "img/../img/1.png", "img", "", " img/0.png", "img/0.png\x00",
               "img\\1.png", "img/dev.png", "img/fifo.png", "img/out.png"]
hostile_path = st.one_of(*[st.sampled_from(FIXED_PATHS)] * 3, one_line_text)
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom", "cp1258"]
line_end = st.sampled_from(["\n", "\r\n", "\r"])


def encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-be-bom":
        return b"\xfe\xff" + text.encode("utf-16-be", "surrogatepass")
    return text.encode(encoding, "replace") if encoding == "cp1258" else text.encode(encoding, "surrogatepass")


raw_bytes = st.lists(
    st.sampled_from([b'"', b",", b"\t", b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00",
                     b"img/0.png", b"../x.png", b"path", b"text", b"{", b"}", b"[", b"]", b":", b"\\", b"\xe1\xbb\x91",
                     b"\xc3", b" "]) | st.binary(max_size=6),
    max_size=40,
).map(b"".join)


def dataset(root: Path, outside: Path) -> Path:
    """`root/img/` with two images, a symlink inside, a symlink to a device, a FIFO and a symlink to
    `outside/x.png`, an image outside the dataset."""
    (root / "img").mkdir(parents=True)
    for name in ("0.png", "1.png"):
        (root / "img" / name).write_bytes(png_bytes())
    (root / "img" / "link.png").symlink_to(root / "img" / "0.png")
    (root / "img" / "dev.png").symlink_to("/dev/zero")
    os.mkfifo(root / "img" / "fifo.png")
    (outside / "x.png").write_bytes(png_bytes())
    (root / "img" / "out.png").symlink_to(outside / "x.png")
    return root


def run(src: Path, out: Path, ingest_settings: IngestSettings = NO_DEDUPE):
    """Ingest and check the invariants that hold for any input; None when ingest refused it cleanly."""
    try:
        result = ingest(src, out, ingest_settings)
    except VhrError as ex:
        assert str(ex).strip() and "\n" not in str(ex), repr(str(ex))
        event(f"refused: {type(ex).__name__}")
        return None
    event("kept some" if result.kept else "kept none")
    assert result.n_in == result.kept + result.quarantined
    records, q = read_records(out), read_quarantine(out)
    assert (len(records), len(q)) == (result.kept, result.quarantined)
    assert sum(result.by_reason.values()) == result.quarantined
    verify_output(out)
    root = src if src.is_dir() else src.parent
    assert all(is_inside(p, root) for p in records["path"])
    assert all(clean_text(raw) == text for raw, text in zip(records["raw_text"], records["text"]))
    return result, records


# ------------------------------------------------------------------------------------- kalapa annotations


@FUZZ
@given(rows=st.lists(st.tuples(hostile_path, one_line_text), max_size=8), encoding=st.sampled_from(ENCODINGS),
       eol=line_end)
def test_kalapa_annotation_labels_survive(rows, encoding, eol):
    with tempfile.TemporaryDirectory(prefix="vhr-fuzz-") as d:
        src = Path(d) / "src"
        dataset(src / "images", Path(d))
        (src / "annotations").mkdir()
        lines = [f"{p}\t{t}" for p, t in rows]
        (src / "annotations" / "w1.txt").write_bytes(encode(eol.join(lines) + eol, encoding))
        got = run(src, Path(d) / "out")
        if got is None or encoding == "cp1258":
            return
        _, records = got
        # A kept record's origin names its line; that line's text after the first tab is the source field.
        for origin, text in zip(records["origin"], records["text"]):
            line_no = int(origin.rsplit(":", 1)[1])
            assert text == clean_text(lines[line_no - 1].split("\t", 1)[1])


@FUZZ_RAW
@given(data=raw_bytes)
def test_kalapa_annotation_random_bytes(data):
    with tempfile.TemporaryDirectory(prefix="vhr-fuzz-") as d:
        src = Path(d) / "src"
        dataset(src / "images", Path(d))
        (src / "annotations").mkdir()
        (src / "annotations" / "w1.txt").write_bytes(data)
        run(src, Path(d) / "out")


# ------------------------------------------------------------------------------------- manifests


@FUZZ
@given(texts=st.lists(hostile_text, max_size=8), encoding=st.sampled_from(ENCODINGS), eol=line_end)
def test_csv_manifest_written_by_csv_module_is_never_mangled(texts, encoding, eol):
    with tempfile.TemporaryDirectory(prefix="vhr-fuzz-") as d:
        root = dataset(Path(d) / "m", Path(d))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator=eol)
        w.writerow(["path", "text", "id"])
        for i, t in enumerate(texts):
            w.writerow([f"img/{i % 2}.png", t, f"row{i}"])
        (root / "list.csv").write_bytes(encode(buf.getvalue(), encoding))
        got = run(root / "list.csv", Path(d) / "out")
        if got is None or encoding == "cp1258":
            return
        _, records = got
        for item_id, text in zip(records["id"], records["text"]):
            assert text == clean_text(texts[int(item_id[3:])])


@FUZZ
@given(rows=st.lists(st.tuples(hostile_path, tsv_text), max_size=8), header=st.booleans(),
       encoding=st.sampled_from(ENCODINGS), eol=line_end, suffix=st.sampled_from([".tsv", ".txt"]))
def test_tsv_manifest_quotes_are_text(rows, header, encoding, eol, suffix):
    with tempfile.TemporaryDirectory(prefix="vhr-fuzz-") as d:
        root = dataset(Path(d) / "m", Path(d))
        lines = (["path\ttext"] if header else []) + [f"{p}\t{t}" for p, t in rows]
        (root / f"list{suffix}").write_bytes(encode(eol.join(lines) + eol, encoding))
        got = run(root / f"list{suffix}", Path(d) / "out")
        if got is None or encoding == "cp1258":
            return
        _, records = got
        for origin, text in zip(records["origin"], records["text"]):
            line_no = int(origin.rsplit(":", 1)[1])
            assert text == clean_text(lines[line_no - 1].split("\t")[1])


@FUZZ_RAW
@given(data=raw_bytes, suffix=st.sampled_from([".csv", ".tsv", ".txt"]))
def test_manifest_random_bytes(data, suffix):
    with tempfile.TemporaryDirectory(prefix="vhr-fuzz-") as d:
        root = dataset(Path(d) / "m", Path(d))
        (root / f"list{suffix}").write_bytes(b"path,text\n" + data if suffix == ".csv" else data)
        run(root / f"list{suffix}", Path(d) / "out")


# ------------------------------------------------------------------------------------- labels.json

json_value = st.recursive(
    hostile_text | hostile_text | st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_path, inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(pairs=st.lists(st.tuples(hostile_path, hostile_text | hostile_text | json_value), max_size=8),
       encoding=st.sampled_from(ENCODINGS))
def test_labels_json_values(pairs, encoding):
    with tempfile.TemporaryDirectory(prefix="vhr-fuzz-") as d:
        root = dataset(Path(d) / "cin", Path(d))
        body = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
        (root / "labels.json").write_bytes(encode(body, encoding))
        got = run(root, Path(d) / "out")
        if got is None:
            return
        result, records = got
        # One item per top-level key: a nested object never adds items.
        assert result.n_in == len(pairs)
        if encoding == "cp1258":
            return
        # A non-string value is quarantined without claiming its key, so the first string value wins.
        first = {}
        for k, v in pairs:
            if isinstance(v, str):
                first.setdefault(k, v)
        for item_id, text in zip(records["id"], records["text"]):
            assert text == clean_text(first[item_id])


@FUZZ_RAW
@given(data=raw_bytes)
def test_labels_json_random_bytes(data):
    with tempfile.TemporaryDirectory(prefix="vhr-fuzz-") as d:
        root = dataset(Path(d) / "cin", Path(d))
        (root / "labels.json").write_bytes(data)
        run(root, Path(d) / "out")
