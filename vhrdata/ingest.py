"""Ingest: raw dataset → cleaned records.parquet + quarantine.jsonl + ingest.json.

Every item read ends in exactly one of the two files, so `in == kept + quarantined` always holds. The
three files are written into a staging folder and committed as one unit (`vhrdata.records.commit_staged`),
so a full disk or a kill leaves the previous output as it was, and one run at a time holds the folder's
lock.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from vhrdata import __version__
from vhrdata.errors import OutputNotWritable, RecordsError
from vhrdata.locks import release_lock
from vhrdata.images import ImageCheck, SizeLimits, check_image
from vhrdata.quarantine import QUARANTINE_FILE, QuarantineItem, Reason, write_quarantine
from vhrdata.raw_formats import DEFAULT_MAX_FILE_BYTES, RawItem, check_source_file, open_layout
from vhrdata.records import (
    fsync_path,
    COLUMNS,
    COMMIT_DIR,
    INGEST_FILE,
    LOCK_FILE,
    RECORDS_FILE,
    SCHEMA_VERSION,
    check_records_folder,
    commit_staged,
    empty_records,
    file_facts,
    finish_interrupted_commit,
    is_vhr_records,
    lock_records_folder,
    write_error,
    write_records,
)
from vhrdata.split import SPLIT_FILE
from vhrdata.text import CleanSettings, clean_text, has_visible_text

log = logging.getLogger(__name__)

OWN_FILES = (RECORDS_FILE, QUARANTINE_FILE, INGEST_FILE, SPLIT_FILE)  # split.json: `vhrdata split` adds it
TMP_PREFIX = ".ingest-tmp-"


@dataclass(frozen=True)
class IngestSettings:
    """Everything that decides what ingest keeps.

    Args:
        layout: auto, kalapa, cinnamon, iam or manifest.
        encoding: encoding of annotation, label and manifest files (a byte-order mark overrides it).
        clean: label cleaning rules.
        limits: accepted image sizes.
        dedupe_images: quarantine later copies of byte-identical images.
        workers: threads that read and decode images (Pillow releases the GIL while decoding).
        allow_outside: read images whose path resolves outside the dataset folder (a manifest's folder).
        max_file_bytes: the largest image or annotation file that is read at all.
    """

    layout: str = "auto"
    encoding: str = "utf-8"
    clean: CleanSettings = field(default_factory=CleanSettings)
    limits: SizeLimits = field(default_factory=SizeLimits)
    dedupe_images: bool = True
    workers: int = 0  # 0: one per core
    allow_outside: bool = False
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self):
        if self.max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be positive. Received: max_file_bytes={self.max_file_bytes}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestResult:
    """Counts and paths of one ingest run."""

    out: Path
    layout: str
    n_in: int
    kept: int
    quarantined: int
    by_reason: dict[str, int]
    info: dict

    def summary_line(self) -> str:
        return f"in {self.n_in} · kept {self.kept} · quarantined {self.quarantined}"


def _ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".vhr-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as ex:
        raise OutputNotWritable(f"cannot write to output folder {out}: {ex.strerror or ex}") from None


def _is_own_leftover(name: str) -> bool:
    return (name.startswith(TMP_PREFIX) or name in (".vhr-write-test", LOCK_FILE, COMMIT_DIR)
            or name in {f + ".tmp" for f in OWN_FILES})


def check_output_folder(out: Path) -> None:
    """Refuse an output folder that holds a store or files ingest did not write; ingest replaces its files
    there, so anything else would be mixed with them or lost."""
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise OutputNotWritable(f"output {out} exists and is not a folder; choose a new folder for --out")
    names = sorted(os.listdir(out))
    if "index.json" in names or any(
        n.startswith("shard-") or (out / n).is_dir() and any(c.startswith("shard-") for c in _listdir(out / n))
        for n in names
    ):
        raise OutputNotWritable(f"{out} holds a store (index.json or shard-* folders); ingest would mix its "
                                "records with it: choose another folder for --out")
    foreign = [n for n in names if n not in OWN_FILES and not _is_own_leftover(n)]
    records = out / RECORDS_FILE
    if RECORDS_FILE in names and not is_vhr_records(records):
        foreign.insert(0, RECORDS_FILE + " (not written by vhr)")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputNotWritable(f"{out} holds files that ingest did not write ({shown}); choose an empty or new "
                                "folder for --out")


def open_output_folder(out: Path) -> int | None:
    """Check that `out` may receive a records folder, that it is writable, and take its lock.

    Returns the lock for `vhrdata.locks.release_lock`.

    Raises:
        OutputNotWritable: `out` holds other files, cannot be written, or another process holds the lock.
    """
    check_output_folder(out)
    _ensure_writable(out)
    try:
        return lock_records_folder(out)
    except RecordsError as ex:
        raise OutputNotWritable(str(ex)) from None
    except OSError as ex:
        raise write_error(ex, out, LOCK_FILE) from None


def _listdir(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def _write_report(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")


def commit_output(out: Path, df: pd.DataFrame, quarantined: list[QuarantineItem], report: dict) -> dict:
    """Write the three output files into a staging folder inside `out` and commit them as one unit.

    Nothing in `out` changes until all three are written and synced, so a full disk or an I/O error leaves
    the previous output as it was; the commit itself is renames (`vhrdata.records.commit_staged`), which a
    kill cannot leave half done. The report carries a new `run_id`, also written into records.parquet,
    and the size and sha256 of quarantine.jsonl, so that readers can tell a mixed set
    (`vhrdata.records.check_records_folder`). The caller holds the folder's lock.
    """
    tmp = out / f"{TMP_PREFIX}{os.getpid()}"
    what = "the temporary folder"
    report["run_id"] = uuid.uuid4().hex
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        what = QUARANTINE_FILE
        by_reason = dict(sorted(write_quarantine(quarantined, tmp / QUARANTINE_FILE).items()))
        report["counts"]["by_reason"] = by_reason
        what = RECORDS_FILE
        write_records(df, tmp, meta={"ingest": {k: report[k] for k in ("src", "layout", "vhr_version", "run_id")}})
        report["files"] = {QUARANTINE_FILE: file_facts(tmp / QUARANTINE_FILE)}
        what = INGEST_FILE
        _write_report(report, tmp / INGEST_FILE)
        for name in (RECORDS_FILE, QUARANTINE_FILE, INGEST_FILE):
            fsync_path(tmp / name)
    except OSError as ex:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(ex, out, what) from None
    try:
        # split.json describes the records this run replaces.
        commit_staged(out, tmp, stale=(SPLIT_FILE,))
    except OSError as ex:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / COMMIT_DIR).exists():
            raise write_error(ex, out, "the commit") from None
        raise OutputNotWritable(
            f"{ex.strerror or ex} while moving the new output into {out}; the next vhrdata command on the "
            "folder finishes the move"
        ) from None
    return by_reason


def _remove_leftovers(out: Path) -> None:
    """Remove staging folders of killed ingest runs (the caller holds the lock, so none is live)."""
    for p in out.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


def verify_output(directory: str | Path) -> None:
    """Raise RecordsError unless `directory` holds one ingest run's three files
    (`vhrdata.records.check_records_folder`)."""
    check_records_folder(directory)


def _reference_problem(item: RawItem, root: Path | None, settings: IngestSettings) -> QuarantineItem | None:
    problem = check_source_file(item.path, None if settings.allow_outside else root, settings.max_file_bytes)
    if problem is None:
        return None
    return QuarantineItem(problem.reason, f"{item.origin}: {problem.message}", id=item.id, path=item.path,
                          origin=item.origin, raw_text=item.raw_text)


def ingest(
    src: str | Path,
    out: str | Path,
    settings: IngestSettings = IngestSettings(),
    callback: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Read a raw dataset, clean it, check every image, and write records + quarantine + report to `out`.

    Args:
        src: the dataset folder (or manifest file).
        out: output folder; created if needed. It may hold only an earlier ingest's output.
        settings: what to keep.
        callback: called as callback(done, total) while images are checked.

    Raises:
        SourceNotFound, LayoutError, OutputNotWritable: fatal problems with the inputs or output (a full
        disk included; the previous output is then left as it was).
    """
    started = time.time()
    out = Path(out).expanduser()
    reader = open_layout(src, settings.layout, settings.encoding, settings.max_file_bytes)
    lock = open_output_folder(out)
    try:
        finish_interrupted_commit(out)  # a killed run's committed output is the previous output
        _remove_leftovers(out)
        return _ingest_locked(reader, src, out, settings, callback, started)
    finally:
        release_lock(lock)


def _ingest_locked(reader, src, out: Path, settings: IngestSettings, callback, started: float) -> IngestResult:

    quarantined: list[QuarantineItem] = []
    candidates: list[tuple[RawItem, str]] = []
    seen_ids: dict[str, str] = {}
    n_in = 0
    for item in reader.items:
        n_in += 1
        if isinstance(item, QuarantineItem):
            quarantined.append(item)
            continue
        if item.id in seen_ids:
            quarantined.append(QuarantineItem(
                Reason.DUPLICATE_ID, f"{item.origin}: id {item.id!r} already used at {seen_ids[item.id]}",
                id=item.id, path=item.path, origin=item.origin, raw_text=item.raw_text,
                duplicate_of=item.id,
            ))
            continue
        seen_ids[item.id] = item.origin
        text = clean_text(item.raw_text, settings.clean)
        if not has_visible_text(text):
            quarantined.append(QuarantineItem(
                Reason.EMPTY_LABEL,
                f"{item.origin}: label has no visible character after cleaning (raw: {item.raw_text!r})",
                id=item.id, path=item.path, origin=item.origin, raw_text=item.raw_text,
            ))
            continue
        # Before any open: a FIFO, a device or a path outside the dataset is refused from os.stat alone.
        problem = _reference_problem(item, reader.root, settings)
        if problem is not None:
            quarantined.append(problem)
            continue
        candidates.append((item, text))

    checks = _check_images([it.path for it, _ in candidates], settings, callback)

    rows = []
    first_by_sha1: dict[str, str] = {}
    for (item, text), chk in zip(candidates, checks):
        if not chk.ok:
            quarantined.append(QuarantineItem(
                chk.reason, f"{item.origin}: {chk.message}", id=item.id, path=item.path,
                origin=item.origin, raw_text=item.raw_text,
            ))
            continue
        if settings.dedupe_images and chk.sha1 in first_by_sha1:
            original = first_by_sha1[chk.sha1]
            quarantined.append(QuarantineItem(
                Reason.DUPLICATE_IMAGE,
                f"{item.origin}: image bytes are identical to {original!r} (sha1 {chk.sha1[:12]}); kept the first",
                id=item.id, path=item.path, origin=item.origin, raw_text=item.raw_text, duplicate_of=original,
            ))
            continue
        first_by_sha1.setdefault(chk.sha1, item.id)
        rows.append({
            "id": item.id, "source": reader.layout, "writer": item.writer, "path": item.path, "text": text,
            "raw_text": item.raw_text, "width": chk.width, "height": chk.height, "sha1": chk.sha1,
            "origin": item.origin,
        })

    df = pd.DataFrame(rows, columns=COLUMNS) if rows else empty_records()
    df["width"] = df["width"].astype("int64")
    df["height"] = df["height"].astype("int64")
    kept, n_q = len(df), len(quarantined)
    if n_in != kept + n_q:  # a bug, never a data problem: refuse to write an unreconciled report
        raise AssertionError(f"ingest lost items: in {n_in} != kept {kept} + quarantined {n_q}")
    changed = int((df["text"] != df["raw_text"]).sum()) if kept else 0
    report = {
        "schema_version": SCHEMA_VERSION,
        "vhr_version": __version__,
        "src": str(Path(src).expanduser().resolve()),
        "layout": reader.layout,
        "settings": settings.to_dict(),
        "counts": {"in": n_in, "kept": kept, "quarantined": n_q, "by_reason": {}},
        "labels_changed_by_cleaning": changed,
        "writers": int(df["writer"].nunique()) if kept else 0,
        "lines_without_writer": int(df["writer"].isna().sum()) if kept else 0,
        **reader.info,
        "seconds": round(time.time() - started, 3),
    }
    by_reason = commit_output(out, df, quarantined, report)
    log.info("ingest %s: in %d kept %d quarantined %d", src, n_in, kept, n_q)
    return IngestResult(out, reader.layout, n_in, kept, n_q, by_reason, reader.info)


def _check_images(paths: list[str], settings: IngestSettings, callback) -> list[ImageCheck]:
    workers = settings.workers or os.cpu_count() or 1
    total = len(paths)
    if workers <= 1 or total < 64:
        results = []
        for i, p in enumerate(paths):
            results.append(check_image(p, settings.limits, max_bytes=settings.max_file_bytes))
            if callback:
                callback(i + 1, total)
        return results
    # Threads, not processes: the work is file reads and Pillow decodes, which release the GIL.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = []
        check = functools.partial(check_image, limits=settings.limits, max_bytes=settings.max_file_bytes)
        for i, r in enumerate(pool.map(check, paths, chunksize=1)):
            results.append(r)
            if callback and ((i + 1) % 64 == 0 or i + 1 == total):
                callback(i + 1, total)
        return results


def read_ingest_report(directory: str | Path) -> dict:
    """ingest.json of an ingest output folder ({} when absent)."""
    p = Path(directory) / INGEST_FILE
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
