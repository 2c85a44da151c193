"""Ingest: raw dataset → cleaned records.parquet + quarantine.jsonl + ingest.json.

Every item read ends in exactly one of the two files, so `in == kept + quarantined` always holds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from vhrdata import __version__
from vhrdata.errors import OutputNotWritable
from vhrdata.images import ImageCheck, SizeLimits, check_image
from vhrdata.raw_formats import RawItem, open_layout
from vhrdata.quarantine import QUARANTINE_FILE, QuarantineItem, Reason, write_quarantine
from vhrdata.records import COLUMNS, SCHEMA_VERSION, empty_records, write_records
from vhrdata.text import CleanSettings, clean_text

log = logging.getLogger(__name__)

INGEST_FILE = "ingest.json"


@dataclass(frozen=True)
class IngestSettings:
    """Everything that decides what ingest keeps.

    Args:
        layout: auto, kalapa, cinnamon, iam or manifest.
        encoding: encoding of annotation, label and manifest files.
        clean: label cleaning rules.
        limits: accepted image sizes.
        dedupe_images: quarantine later copies of byte-identical images.
        workers: threads that read and decode images (Pillow releases the GIL while decoding).
    """

    layout: str = "auto"
    encoding: str = "utf-8"
    clean: CleanSettings = field(default_factory=CleanSettings)
    limits: SizeLimits = field(default_factory=SizeLimits)
    dedupe_images: bool = True
    workers: int = 0  # 0: one per core

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


def ingest(
    src: str | Path,
    out: str | Path,
    settings: IngestSettings = IngestSettings(),
    callback: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Read a raw dataset, clean it, check every image, and write records + quarantine + report to `out`.

    Args:
        src: the dataset folder (or manifest file).
        out: output folder; created if needed.
        settings: what to keep.
        callback: called as callback(done, total) while images are checked.

    Raises:
        SourceNotFound, LayoutError, OutputNotWritable: fatal problems with the inputs or output.
    """
    started = time.time()
    out = Path(out).expanduser()
    reader = open_layout(src, settings.layout, settings.encoding)
    _ensure_writable(out)

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
        if not text:
            quarantined.append(QuarantineItem(
                Reason.EMPTY_LABEL, f"{item.origin}: label is empty after cleaning (raw: {item.raw_text!r})",
                id=item.id, path=item.path, origin=item.origin, raw_text=item.raw_text,
            ))
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
    by_reason = dict(sorted(write_quarantine(quarantined, out / QUARANTINE_FILE).items()))
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
        "counts": {"in": n_in, "kept": kept, "quarantined": n_q, "by_reason": by_reason},
        "labels_changed_by_cleaning": changed,
        "writers": int(df["writer"].nunique()) if kept else 0,
        "lines_without_writer": int(df["writer"].isna().sum()) if kept else 0,
        **reader.info,
        "seconds": round(time.time() - started, 3),
    }
    write_records(df, out, meta={"ingest": {k: report[k] for k in ("src", "layout", "vhr_version")}})
    tmp = out / (INGEST_FILE + ".tmp")
    tmp.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(out / INGEST_FILE)
    log.info("ingest %s: in %d kept %d quarantined %d", src, n_in, kept, n_q)
    return IngestResult(out, reader.layout, n_in, kept, n_q, by_reason, reader.info)


def _check_images(paths: list[str], settings: IngestSettings, callback) -> list[ImageCheck]:
    workers = settings.workers or os.cpu_count() or 1
    total = len(paths)
    if workers <= 1 or total < 64:
        results = []
        for i, p in enumerate(paths):
            results.append(check_image(p, settings.limits))
            if callback:
                callback(i + 1, total)
        return results
    # Threads, not processes: the work is file reads and Pillow decodes, which release the GIL.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = []
        for i, r in enumerate(pool.map(lambda p: check_image(p, settings.limits), paths, chunksize=1)):
            results.append(r)
            if callback and ((i + 1) % 64 == 0 or i + 1 == total):
                callback(i + 1, total)
        return results


def read_ingest_report(directory: str | Path) -> dict:
    """ingest.json of an ingest output folder ({} when absent)."""
    p = Path(directory) / INGEST_FILE
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
