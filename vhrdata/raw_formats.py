"""Readers of raw dataset formats. Each yields `RawItem`s, or `QuarantineItem`s for lines it cannot use.

Formats:
- kalapa: `SRC/images/<writer>/<file>` + `SRC/annotations/<writer>.txt`, lines `<writer>/<file>\\t<text>`.
- cinnamon: `SRC/labels.json` = {"file name": "text"}, images beside it.
- iam: `SRC/lines.txt` (IAM format) + `SRC/lines/<a01>/<a01-000u>/<id>.png`, writers from `SRC/forms.txt`.
- manifest: a CSV, TSV or Parquet file with columns `path,text[,writer][,id]`, or a header-less
  `path<TAB>text` file (VietOCR, PaddleOCR); paths are relative to the manifest's folder. A folder that
  holds exactly one manifest file stands for that file.

Text files are split into physical lines (LF, CRLF or CR) before any field is parsed, and each line is
parsed on its own, so one stray quote can never merge lines and every line is accounted for: it is an
item, a header, or a blank line counted in `info["blank_lines"]`.
"""

from __future__ import annotations

import codecs
import csv
import html
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

from vhrdata.errors import LayoutError, SourceNotFound
from vhrdata.quarantine import QuarantineItem, Reason

LAYOUTS = ("kalapa", "cinnamon", "iam", "manifest")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".txt")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")  # manifests by name alone; a .txt must look like one
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jp2")
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


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
    """What a layout reader returns: the items, plus facts for the ingest report.

    `root` is the folder every referenced image must stay inside (the dataset folder, or a manifest's own
    folder).
    """

    layout: str
    items: Iterator[Item]
    info: dict
    root: Path | None = None


@dataclass
class FileProblem(Exception):
    """A referenced or annotation file that must not be read: a reason code and a readable message."""

    reason: Reason
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ReadLimits:
    """How annotation files are read: their encoding and the most bytes one file may have."""

    encoding: str = "utf-8"
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


_KIND_NAMES = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KIND_NAMES if test(mode)), "not a regular file")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.4g} MiB"


def is_inside(path: str, root: Path) -> bool:
    """Whether `path`, with every symlink resolved, lies inside `root` (itself resolved)."""
    real = os.path.realpath(path)
    base = os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def check_source_file(path: str, root: Path | None, max_bytes: int, what: str = "image") -> FileProblem | None:
    """Why `path` must not be opened, or None when it is a regular file inside `root` and under `max_bytes`.

    Uses `os.stat` (following symlinks) only, so a FIFO or device is refused without ever being opened.
    `root=None` allows paths anywhere.
    """
    if "\x00" in path:
        return FileProblem(Reason.MALFORMED_LINE, f"{what} path contains a NUL character: {path!r}")
    if root is not None and not is_inside(path, root):
        return FileProblem(
            Reason.PATH_OUTSIDE_DATASET,
            f"{what} path {path} resolves to {os.path.realpath(path)}, outside the dataset folder {root}; "
            "pass --allow-outside to read files outside it",
        )
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return FileProblem(Reason.MISSING_IMAGE if what == "image" else Reason.UNREADABLE_FILE,
                           f"{what} file not found: {path}")
    except (OSError, ValueError) as ex:
        return FileProblem(Reason.UNREADABLE_FILE, f"cannot read {path}: {getattr(ex, 'strerror', None) or ex}")
    if not stat.S_ISREG(st.st_mode):
        return FileProblem(Reason.NOT_A_REGULAR_FILE, f"{path} is {_kind(st.st_mode)}, not a regular {what} file")
    if st.st_size > max_bytes:
        return FileProblem(
            Reason.FILE_TOO_LARGE,
            f"{path} is {_mb(st.st_size)}, over the limit of {_mb(max_bytes)} per file; "
            "raise it with --max-file-mb",
        )
    return None


def read_capped(path: Path, max_bytes: int, what: str = "annotation") -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or FileProblem.

    Opened non-blocking and checked again with fstat, so a file swapped for a FIFO after the stat cannot
    block the read.
    """
    problem = check_source_file(str(path), None, max_bytes, what)
    if problem:
        raise problem
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as ex:
        raise FileProblem(Reason.UNREADABLE_FILE, f"cannot read {path}: {ex.strerror or ex}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise FileProblem(Reason.NOT_A_REGULAR_FILE, f"{path} is {_kind(mode)}, not a regular {what} file")
        try:
            data = f.read(max_bytes + 1)
        except OSError as ex:
            raise FileProblem(Reason.UNREADABLE_FILE, f"cannot read {path}: {ex.strerror or ex}") from None
    if len(data) > max_bytes:
        raise FileProblem(Reason.FILE_TOO_LARGE, f"{path} is over the limit of {_mb(max_bytes)} per file; "
                                                 "raise it with --max-file-mb")
    return data


class BadEncoding(Exception):
    """A text file that does not decode; the message says where and which --encoding to try."""


def _bad_encoding_message(path: Path, data: bytes, offset: int, encoding: str, detail: str = "") -> str:
    offset = min(offset, max(len(data) - 1, 0))
    line_no = data.count(b"\n", 0, offset) + 1
    byte = f"byte 0x{data[offset]:02x}" if data else "the data"
    # NUL bytes in a text file are the mark of UTF-16, whose ASCII letters are half zero bytes.
    hint = ("--encoding utf-16-le (or utf-16-be; the file has NUL bytes, as UTF-16 without a byte-order mark does)"
            if b"\x00" in data[:65536] else "--encoding (e.g. --encoding cp1258 or latin-1)")
    return (f"{path} is not valid {encoding}: {byte} at offset {offset} (line {line_no}) does not decode"
            f"{detail}; pass {hint} to read it")


def decode_text(path: Path, data: bytes, encoding: str) -> str:
    """Decode a text file; a byte-order mark (UTF-8, UTF-16 LE/BE) overrides `encoding`."""
    skip = 0
    for bom, enc in _BOMS:
        if data.startswith(bom):
            encoding, skip = enc, len(bom)
            break
    try:
        text = data[skip:].decode(encoding)
    except UnicodeDecodeError as err:
        raise BadEncoding(_bad_encoding_message(path, data, skip + err.start, encoding)) from None
    except LookupError:
        raise LayoutError(f"unknown encoding {encoding!r}; pass --encoding with a Python codec name "
                          "such as utf-8, utf-16, cp1258 or latin-1") from None
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise BadEncoding(_bad_encoding_message(path, data, data.find(b"\x00"), encoding,
                                                ": it holds NUL characters"))
    return text


def physical_lines(text: str) -> list[str]:
    """Lines split at LF, CRLF or CR only: `str.splitlines` would also split at \\v, \\x1c or U+2028 inside
    a label."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _count_nonblank_byte_lines(data: bytes) -> int:
    # NULs dropped: in UTF-16 each line break leaves one behind, which is not a line of its own.
    return sum(1 for raw in _LINE_BREAK_BYTES.split(data) if raw.replace(b"\x00", b"").strip())


def read_text_lines(path: Path, limits: ReadLimits) -> list[str]:
    """Physical lines of an annotation file. Raises FileProblem, BadEncoding or LayoutError."""
    return physical_lines(decode_text(path, read_capped(path, limits.max_file_bytes), limits.encoding))


def _fatal(path: Path, limits: ReadLimits) -> list[str]:
    """Lines of a file the whole dataset depends on: any problem is fatal."""
    try:
        return read_text_lines(path, limits)
    except (FileProblem, BadEncoding) as ex:
        raise LayoutError(str(ex)) from None


def _file_items(path: Path, rel: str, limits: ReadLimits) -> tuple[list[str] | None, list[QuarantineItem]]:
    """Lines of one of several annotation files, or the quarantine items that stand for it."""
    try:
        return read_text_lines(path, limits), []
    except FileProblem as ex:
        return None, [QuarantineItem(ex.reason, f"{rel}: {ex.message}", origin=rel, path=str(path))]
    except BadEncoding as ex:
        try:
            n = _count_nonblank_byte_lines(read_capped(path, limits.max_file_bytes))
        except FileProblem:
            n = 1
        return None, [QuarantineItem(Reason.BAD_ENCODING, str(ex), origin=f"{rel}:{i + 1}?") for i in range(max(n, 1))]


# --------------------------------------------------------------------------------------------- detection


def _looks_like_image_path(s: str) -> bool:
    return s.strip().lower().endswith(IMAGE_SUFFIXES)


def sniff_headerless_tsv(first_line: str) -> bool:
    """Whether a manifest's first line is a `path<TAB>text` data row rather than a header."""
    fields = _split_tsv(first_line)
    names = {f.strip().lower() for f in fields}
    return len(fields) == 2 and not {"path", "text"} & names and _looks_like_image_path(fields[0])


def _first_line(path: Path, limits: ReadLimits) -> str | None:
    try:
        lines = read_text_lines(path, limits)
    except (FileProblem, BadEncoding, LayoutError):
        return None
    return next((ln for ln in lines if ln.strip()), None)


def find_manifests(folder: Path, limits: ReadLimits = ReadLimits()) -> list[Path]:
    """Manifest files directly inside `folder`: every .csv/.tsv/.parquet, and .txt files that hold
    `path<TAB>text` lines."""
    found = []
    for p in sorted(folder.iterdir()):
        suffix = p.suffix.lower()
        if suffix not in MANIFEST_SUFFIXES or check_source_file(str(p), None, limits.max_file_bytes, "manifest"):
            continue
        if suffix in TABLE_SUFFIXES:
            found.append(p)
        elif suffix == ".txt":
            first = _first_line(p, limits)
            if first is not None and sniff_headerless_tsv(first):
                found.append(p)
    return found


def detect_layouts(src: Path, limits: ReadLimits = ReadLimits()) -> list[str]:
    """Every layout whose marker files are present in `src`."""
    if src.is_file() or (src.exists() and not src.is_dir()):
        return ["manifest"] if src.suffix.lower() in MANIFEST_SUFFIXES else []
    found = []
    if (src / "images").is_dir() and (src / "annotations").is_dir():
        found.append("kalapa")
    if (src / "labels.json").exists():
        found.append("cinnamon")
    if (src / "lines.txt").exists():
        found.append("iam")
    # A folder is a manifest only when nothing else fits: many datasets carry a stray CSV of metadata.
    if not found and find_manifests(src, limits):
        found.append("manifest")
    return found


def _manifest_file(src: Path, limits: ReadLimits) -> Path:
    if not src.is_dir():
        return src
    found = find_manifests(src, limits)
    if not found:
        raise LayoutError(f"{src} is not a manifest dataset: it holds no .csv/.tsv/.parquet file or "
                          "path<TAB>text .txt file; give the manifest file itself")
    if len(found) > 1:
        raise LayoutError(f"{src} holds {len(found)} manifest files ({', '.join(p.name for p in found)}); "
                          "give the one to ingest, e.g. "
                          f"`vhrdata ingest {src / found[0].name} --out ...`")
    return found[0]


def open_layout(src: str | Path, layout: str = "auto", encoding: str = "utf-8",
                max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LayoutReader:
    """Open `src` with the given layout (or detect it) and return a reader over its items.

    Annotation, label and manifest files are read only if they are regular files of at most
    `max_file_bytes`.
    """
    src = Path(src).expanduser()
    if not os.path.lexists(src):
        raise SourceNotFound(f"source not found: {src}")
    if not src.exists():
        raise SourceNotFound(f"source not found: {src} is a broken symlink")
    src = src.resolve()
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise LayoutError(f"unknown encoding {encoding!r}; pass --encoding with a Python codec name "
                          "such as utf-8, utf-16, cp1258 or latin-1") from None
    limits = ReadLimits(encoding=encoding, max_file_bytes=max_file_bytes)
    if layout == "auto":
        found = detect_layouts(src, limits)
        if not found:
            raise LayoutError(
                f"no dataset layout detected in {src}: expected images/ + annotations/ (kalapa), labels.json "
                "(cinnamon), lines.txt (iam), or a .csv/.tsv/.parquet manifest or path<TAB>text .txt file; "
                "pass --layout to choose"
            )
        if len(found) > 1:
            raise LayoutError(f"several layouts fit {src}: {', '.join(found)}; choose one with --layout")
        layout = found[0]
    readers: dict[str, Callable[[Path, ReadLimits], LayoutReader]] = {
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
        "cinnamon": [] if (src / "labels.json").exists() else ["labels.json"],
        "iam": [] if (src / "lines.txt").exists() else ["lines.txt"],
        "manifest": [],
    }[layout]
    if missing:
        raise LayoutError(f"{src} is not a {layout} dataset: missing {', '.join(missing)}")
    return readers[layout](src, limits)


# --------------------------------------------------------------------------------------------- readers


def read_kalapa(src: Path, limits: ReadLimits = ReadLimits()) -> LayoutReader:
    images = src / "images"
    # Every *.txt entry, not only regular files: a FIFO or folder named w3.txt is quarantined, not skipped.
    ann_files = sorted(p for p in (src / "annotations").iterdir() if p.suffix == ".txt")
    if not ann_files:
        raise LayoutError(f"{src / 'annotations'} holds no <writer>.txt annotation files")
    referenced: set[str] = set()
    info: dict = {"writer_source": "annotation file name", "annotation_files": len(ann_files), "blank_lines": 0}

    def items() -> Iterator[Item]:
        for ann in ann_files:
            writer = ann.stem
            rel_ann = ann.relative_to(src).as_posix()
            lines, problems = _file_items(ann, rel_ann, limits)
            yield from problems
            for line_no, line in enumerate(lines or (), 1):
                if not line.strip():
                    info["blank_lines"] += 1
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
                yield RawItem(id=rel, path=os.path.join(images, rel), raw_text=text, writer=writer, origin=origin)
        on_disk = {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()}
        info["unannotated_images"] = len(on_disk - referenced)

    return LayoutReader("kalapa", items(), info, root=src)


class _Object(list):
    """The (key, value) pairs of one JSON object, in file order, duplicates kept."""


_JSON_TYPES = {_Object: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


def read_cinnamon(src: Path, limits: ReadLimits = ReadLimits()) -> LayoutReader:
    path = src / "labels.json"
    try:
        text = decode_text(path, read_capped(path, limits.max_file_bytes, "labels.json"), limits.encoding)
    except (FileProblem, BadEncoding) as ex:
        raise LayoutError(str(ex)) from None
    try:
        doc = json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as ex:
        raise LayoutError(f"{path} is not valid JSON: {ex}") from None
    except (ValueError, RecursionError) as ex:  # int too long, nesting too deep
        raise LayoutError(f"{path} is not usable JSON: {type(ex).__name__}: {str(ex)[:120]}") from None
    if not isinstance(doc, _Object):
        raise LayoutError(f"{path} must be a JSON object {{\"image file\": \"text\", ...}}, but it is "
                          f"{_JSON_TYPES.get(type(doc), type(doc).__name__)}")
    info = {"writer_source": "none (the dataset has no writer ids)"}

    def items() -> Iterator[Item]:
        for name, label in doc:
            origin = f"labels.json[{name!r}]"
            if not isinstance(label, str):
                yield QuarantineItem(
                    Reason.MALFORMED_LINE,
                    f"{origin}: label is {_JSON_TYPES.get(type(label), type(label).__name__)}, not a string",
                    id=name, origin=origin,
                )
                continue
            yield RawItem(id=name, path=os.path.join(src, name), raw_text=label, writer=None, origin=origin)

    return LayoutReader("cinnamon", items(), info, root=src)


def _read_iam_forms(path: Path, limits: ReadLimits) -> dict[str, str]:
    writers = {}
    for line in _fatal(path, limits):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            writers[parts[0]] = parts[1]
    return writers


def read_iam(src: Path, limits: ReadLimits = ReadLimits()) -> LayoutReader:
    forms_path = src / "forms.txt"
    forms = _read_iam_forms(forms_path, limits) if os.path.lexists(forms_path) else None
    info = {"writer_source": "forms.txt" if forms is not None else "form id (no forms.txt)", "blank_lines": 0,
            "comment_lines": 0}

    def items() -> Iterator[Item]:
        lines, problems = _file_items(src / "lines.txt", "lines.txt", limits)
        yield from problems
        for line_no, line in enumerate(lines or (), 1):
            if not line.strip() or line.startswith("#"):
                info["blank_lines" if not line.strip() else "comment_lines"] += 1
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
            path = os.path.join(src, "lines", id_parts[0], form, f"{line_id}.png")
            yield RawItem(id=line_id, path=path, raw_text=text, writer=writer, origin=origin)

    return LayoutReader("iam", items(), info, root=src)


def _split_tsv(line: str) -> list[str]:
    # QUOTE_NONE: in a TSV a quote is text, and only a tab separates.
    return next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE, strict=True), [""])


def _split_csv(line: str) -> list[str]:
    return next(csv.reader([line], delimiter=",", strict=True), [""])


MAX_QUOTED_SPAN = 20  # lines a stray quote is followed to its closing quote


def _quoted_span_end(lines: list[str], start: int) -> int | None:
    """Index of the last line of a CSV record whose quoted field opens on `lines[start]` and closes on a
    later line, or None when no such record ends within MAX_QUOTED_SPAN lines."""
    for end in range(start + 1, min(start + MAX_QUOTED_SPAN, len(lines))):
        try:
            rows = list(csv.reader(["\n".join(lines[start:end + 1])], strict=True))
        except csv.Error as ex:
            if "unexpected end of data" in str(ex):
                continue
            return None
        return end if len(rows) == 1 else None
    return None


def _read_parquet(src: Path) -> tuple[list[str], list[tuple[str, dict]]]:
    import pandas as pd

    try:
        df = pd.read_parquet(src)
    except Exception as ex:  # pyarrow raises several types for a damaged or foreign file
        raise LayoutError(f"{src} is not a readable parquet file: {type(ex).__name__}: {str(ex)[:160]}") from None
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    return [str(c) for c in df.columns], [(f"{src.name}:row {i}", r) for i, r in enumerate(rows)]


def read_manifest(src: Path, limits: ReadLimits = ReadLimits()) -> LayoutReader:
    src = _manifest_file(src, limits)
    root = src.parent
    suffix = src.suffix.lower()
    info: dict = {"manifest": src.name, "blank_lines": 0}
    parsed: list[tuple[str, dict | QuarantineItem]] = []
    if suffix == ".parquet":
        problem = check_source_file(str(src), None, limits.max_file_bytes, "manifest")
        if problem:
            raise LayoutError(problem.message)
        columns, parsed = _read_parquet(src)  # type: ignore[assignment]
    else:
        lines = _fatal(src, limits)
        first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
        tabbed = suffix in (".tsv", ".txt") or (first is not None and sniff_headerless_tsv(lines[first]))
        split, kind = (_split_tsv, "tab") if tabbed else (_split_csv, "comma")
        headerless = first is not None and tabbed and sniff_headerless_tsv(lines[first])
        if headerless:
            columns, body_start = ["path", "text"], first
            info["header"] = "none (path<TAB>text lines)"
        else:
            try:
                columns = [c.strip() for c in split(lines[first])] if first is not None else []
            except csv.Error:
                columns = []
            body_start = (first + 1) if first is not None else len(lines)
        info["blank_lines"] = sum(1 for ln in lines[:body_start] if not ln.strip())
        i = body_start
        while i < len(lines):
            line, line_no = lines[i], i + 1
            origin = f"{src.name}:{line_no}"
            i += 1
            if not line.strip():
                info["blank_lines"] += 1
                continue
            try:
                fields = split(line)
            except csv.Error as ex:
                opens = kind == "comma" and "unexpected end of data" in str(ex)
                end = _quoted_span_end(lines, line_no - 1) if opens else None
                if end is None:
                    parsed.append((origin, QuarantineItem(
                        Reason.MALFORMED_LINE,
                        f"{origin}: unbalanced quote ({ex}); a quoted text must close on the same line, and a "
                        f"quote inside it is written twice (\"\"): {line[:80]!r}",
                        origin=origin, raw_text=line,
                    )))
                    continue
                # A quoted field that runs over several lines: never a text line's label, and joining the
                # lines would hide a stray quote's merge, so each of its lines is quarantined.
                for k in range(line_no - 1, end + 1):
                    parsed.append((f"{src.name}:{k + 1}", QuarantineItem(
                        Reason.MALFORMED_LINE,
                        f"{src.name}:{k + 1}: a quoted text runs over lines {line_no}–{end + 1}; a label must be "
                        f"on one line (check for a stray quote): {lines[k][:80]!r}",
                        origin=f"{src.name}:{k + 1}", raw_text=lines[k],
                    )))
                i = end + 1
                continue
            if len(fields) != len(columns):
                quote_hint = (" — a text that contains commas must be quoted: \"Số 12, Phường Hàng Bông\""
                              if kind == "comma" and len(fields) > len(columns) else "")
                parsed.append((origin, QuarantineItem(
                    Reason.MALFORMED_LINE,
                    f"{origin}: row has {len(fields)} {kind}-separated field(s), the header has {len(columns)} "
                    f"({', '.join(columns)}){quote_hint}: {line[:80]!r}",
                    origin=origin, raw_text=line,
                )))
                continue
            parsed.append((origin, dict(zip(columns, fields))))
    missing = [c for c in ("path", "text") if c not in columns]
    if missing:
        raise LayoutError(
            f"{src} has no column(s) {', '.join(missing)}; a manifest needs a header row with path,text[,writer]"
            f", or path<TAB>text lines without a header (found: {', '.join(map(str, columns)) or 'nothing'})"
        )
    has_writer = "writer" in columns
    info["writer_source"] = "manifest writer column" if has_writer else "none (no writer column)"

    def items() -> Iterator[Item]:
        for origin, row in parsed:
            if isinstance(row, QuarantineItem):
                yield row
                continue
            path, text = row.get("path"), row.get("text")
            if path is None:
                yield QuarantineItem(Reason.MALFORMED_LINE, f"{origin}: row has no path: {row!r}", origin=origin)
                continue
            path = str(path)
            writer = row.get("writer") if has_writer else None
            writer = str(writer) if writer not in (None, "") else None
            item_id = str(row["id"]) if row.get("id") not in (None, "") else path
            yield RawItem(id=item_id, path=os.path.join(root, path), raw_text="" if text is None else str(text),
                          writer=writer, origin=origin)

    return LayoutReader("manifest", items(), info, root=root)
