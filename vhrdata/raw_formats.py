"""Readers of raw dataset formats. Each yields `RawItem`s, or `QuarantineItem`s for lines it cannot use.

Layouts:
- kalapa: `SRC/images/<writer>/<file>` + `SRC/annotations/<writer>.txt`, lines `<writer>/<file>\\t<text>`.
- cinnamon: `SRC/labels.json` = {"file name": "text"}, images beside it.
- iam: `SRC/lines.txt` (IAM format) + `SRC/lines/<a01>/<a01-000u>/<id>.png`, writers from `SRC/forms.txt`.
- manifest: a CSV, TSV or Parquet file with columns `path,text[,writer][,id]`.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

from vhrdata.errors import LayoutError, SourceNotFound
from vhrdata.quarantine import QuarantineItem, Reason

LAYOUTS = ("kalapa", "cinnamon", "iam", "manifest")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet")


@dataclass
class RawItem:
    """One line as the dataset states it, before any check."""

    id: str
    path: str  # absolute
    raw_text: str
    writer: str | None
    origin: str


Item = Union[RawItem, QuarantineItem]


@dataclass
class LayoutReader:
    """What a layout reader returns: the items, plus facts for the ingest report."""

    layout: str
    items: Iterator[Item]
    info: dict


def detect_layouts(src: Path) -> list[str]:
    """Every layout whose marker files are present in `src`."""
    if src.is_file():
        return ["manifest"] if src.suffix.lower() in MANIFEST_SUFFIXES else []
    found = []
    if (src / "images").is_dir() and (src / "annotations").is_dir():
        found.append("kalapa")
    if (src / "labels.json").is_file():
        found.append("cinnamon")
    if (src / "lines.txt").is_file():
        found.append("iam")
    return found


def open_layout(src: str | Path, layout: str = "auto", encoding: str = "utf-8") -> LayoutReader:
    """Open `src` with the given layout (or detect it) and return a reader over its items."""
    src = Path(src).expanduser()
    if not src.exists():
        raise SourceNotFound(f"source not found: {src}")
    src = src.resolve()
    if layout == "auto":
        found = detect_layouts(src)
        if not found:
            raise LayoutError(
                f"no dataset layout detected in {src}: expected images/ + annotations/ (kalapa), labels.json "
                "(cinnamon), lines.txt (iam), or a .csv/.tsv/.parquet manifest file; pass --layout to choose"
            )
        if len(found) > 1:
            raise LayoutError(f"several layouts fit {src}: {', '.join(found)}; choose one with --layout")
        layout = found[0]
    readers: dict[str, Callable[[Path, str], LayoutReader]] = {
        "kalapa": read_kalapa,
        "cinnamon": read_cinnamon,
        "iam": read_iam,
        "manifest": read_manifest,
    }
    if layout not in readers:
        raise LayoutError(f"unknown layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")
    if layout != "manifest" and not src.is_dir():
        raise LayoutError(f"the {layout} layout needs a folder, got the file {src}")
    missing = {
        "kalapa": [p for p in ("images", "annotations") if not (src / p).is_dir()],
        "cinnamon": [] if (src / "labels.json").is_file() else ["labels.json"],
        "iam": [] if (src / "lines.txt").is_file() else ["lines.txt"],
        "manifest": [] if src.is_file() else ["a manifest file (give the .csv/.tsv/.parquet file itself)"],
    }[layout]
    if missing:
        raise LayoutError(f"{src} is not a {layout} dataset: missing {', '.join(missing)}")
    return readers[layout](src, encoding)


def _bad_encoding_message(path: Path, data: bytes, err: UnicodeDecodeError, encoding: str) -> str:
    line_no = data.count(b"\n", 0, err.start) + 1
    return (
        f"{path} is not valid {encoding}: byte 0x{data[err.start]:02x} at offset {err.start} (line {line_no}) "
        f"does not decode; pass --encoding (e.g. --encoding cp1258 or latin-1) to read it"
    )


def _read_text_lines(path: Path, encoding: str) -> tuple[list[str] | None, str | None, int]:
    """(lines, None, n) when the file decodes, else (None, message, number of non-blank lines)."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        n = sum(1 for raw in data.splitlines() if raw.strip())
        return None, _bad_encoding_message(path, data, err, encoding), n
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    return lines, None, len(lines)


def read_kalapa(src: Path, encoding: str = "utf-8") -> LayoutReader:
    images = src / "images"
    ann_files = sorted(p for p in (src / "annotations").iterdir() if p.is_file() and p.suffix == ".txt")
    if not ann_files:
        raise LayoutError(f"{src / 'annotations'} holds no <writer>.txt annotation files")
    referenced: set[str] = set()
    info: dict = {"writer_source": "annotation file name", "annotation_files": len(ann_files)}

    def items() -> Iterator[Item]:
        for ann in ann_files:
            writer = ann.stem
            rel_ann = ann.relative_to(src).as_posix()
            lines, problem, n = _read_text_lines(ann, encoding)
            if lines is None:
                for i in range(n):
                    yield QuarantineItem(Reason.BAD_ENCODING, problem, origin=f"{rel_ann}:{i + 1}?")
                continue
            for line_no, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                origin = f"{rel_ann}:{line_no}"
                if "\t" not in line:
                    yield QuarantineItem(
                        Reason.NO_TAB,
                        f"{origin}: line has no tab between image path and text: {line[:80]!r}",
                        origin=origin, raw_text=line,
                    )
                    continue
                rel, text = line.split("\t", 1)
                rel = rel.strip().replace("\\", "/")
                referenced.add(rel)
                yield RawItem(id=rel, path=str(images / rel), raw_text=text, writer=writer, origin=origin)
        on_disk = {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()}
        info["unannotated_images"] = len(on_disk - referenced)

    return LayoutReader("kalapa", items(), info)


def read_cinnamon(src: Path, encoding: str = "utf-8") -> LayoutReader:
    path = src / "labels.json"
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise LayoutError(_bad_encoding_message(path, data, err, encoding)) from None
    pairs: list[tuple[str, object]] = []
    try:
        json.loads(text.lstrip("\ufeff"), object_pairs_hook=lambda kv: pairs.extend(kv) or {})
    except json.JSONDecodeError as ex:
        raise LayoutError(f"{path} is not valid JSON: {ex}") from None
    info = {"writer_source": "none (the dataset has no writer ids)"}

    def items() -> Iterator[Item]:
        for name, label in pairs:
            origin = f"labels.json[{name!r}]"
            if not isinstance(label, str):
                yield QuarantineItem(
                    Reason.MALFORMED_LINE, f"{origin}: label is {type(label).__name__}, not a string",
                    id=name, origin=origin,
                )
                continue
            yield RawItem(id=name, path=str(src / name), raw_text=label, writer=None, origin=origin)

    return LayoutReader("cinnamon", items(), info)


def _read_iam_forms(path: Path, encoding: str) -> dict[str, str]:
    writers = {}
    lines, problem, _ = _read_text_lines(path, encoding)
    if lines is None:
        raise LayoutError(problem)
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            writers[parts[0]] = parts[1]
    return writers


def read_iam(src: Path, encoding: str = "utf-8") -> LayoutReader:
    forms_path = src / "forms.txt"
    forms = _read_iam_forms(forms_path, encoding) if forms_path.is_file() else None
    info = {"writer_source": "forms.txt" if forms is not None else "form id (no forms.txt)"}

    def items() -> Iterator[Item]:
        lines, problem, n = _read_text_lines(src / "lines.txt", encoding)
        if lines is None:
            for i in range(n):
                yield QuarantineItem(Reason.BAD_ENCODING, problem, origin=f"lines.txt:{i + 1}?")
            return
        for line_no, line in enumerate(lines, 1):
            if not line.strip() or line.startswith("#"):
                continue
            origin = f"lines.txt:{line_no}"
            parts = line.split(" ")
            line_id = parts[0]
            id_parts = line_id.split("-")
            if len(parts) < 9 or len(id_parts) < 3:
                yield QuarantineItem(
                    Reason.MALFORMED_LINE,
                    f"{origin}: expected 'id result gray components x y w h text', got {line[:80]!r}",
                    origin=origin, raw_text=line,
                )
                continue
            form = "-".join(id_parts[:2])
            text = html.unescape(" ".join(parts[8:]).replace("|", " "))
            if forms is not None and form not in forms:
                writer = form
            else:
                writer = forms[form] if forms is not None else form
            path = src / "lines" / id_parts[0] / form / f"{line_id}.png"
            yield RawItem(id=line_id, path=str(path), raw_text=text, writer=writer, origin=origin)

    return LayoutReader("iam", items(), info)


def read_manifest(src: Path, encoding: str = "utf-8") -> LayoutReader:
    root = src.parent
    suffix = src.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        df = pd.read_parquet(src)
        rows = df.astype(object).where(df.notna(), None).to_dict("records")
        columns = list(df.columns)
    else:
        data = src.read_bytes()
        try:
            text = data.decode(encoding).lstrip("\ufeff")
        except UnicodeDecodeError as err:
            raise LayoutError(_bad_encoding_message(src, data, err, encoding)) from None
        delimiter = "\t" if suffix == ".tsv" else ","
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in ("path", "text") if c not in columns]
    if missing:
        raise LayoutError(
            f"{src} has no column(s) {', '.join(missing)}; a manifest needs a header row with path,text[,writer]"
            f" (found: {', '.join(map(str, columns)) or 'nothing'})"
        )
    has_writer = "writer" in columns
    info = {"writer_source": "manifest writer column" if has_writer else "none (no writer column)"}

    def items() -> Iterator[Item]:
        for row_no, row in enumerate(rows, 2 if suffix != ".parquet" else 0):
            origin = f"{src.name}:{row_no}"
            path, text = row.get("path"), row.get("text")
            # csv.DictReader fills the columns a short row lacks with None
            if path is None or (suffix != ".parquet" and None in row.values()):
                yield QuarantineItem(
                    Reason.MALFORMED_LINE, f"{origin}: row has missing fields: {row!r}", origin=origin,
                )
                continue
            path = str(path)
            full = path if os.path.isabs(path) else str(root / path)
            writer = row.get("writer") if has_writer else None
            writer = str(writer) if writer not in (None, "") else None
            item_id = str(row["id"]) if row.get("id") not in (None, "") else path
            yield RawItem(id=item_id, path=full, raw_text="" if text is None else str(text), writer=writer,
                          origin=origin)

    return LayoutReader("manifest", items(), info)
