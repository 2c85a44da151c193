"""Build a sharded LMDB store of preprocessed line images from records.parquet.

The build is atomic per shard (written under a temporary name, renamed when complete),
resumable (finished shards are kept), and refuses to mix settings or records. One shard can be
built alone (`shard_index`), so a cluster scheduler can fan the build out; `index.json` is
assembled once every shard exists.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import signal
import socket
import struct
import sys
import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import lmdb
import numpy as np
import pandas as pd

from vhrdata import __version__
from vhrdata.errors import ImageDecodeError, StoreError, write_failure
from vhrdata.images import SizeLimits, decode_image
from vhrdata.locks import LockBusy, release_lock, take_lock
from vhrdata.preprocess import PreprocessSettings, preprocess_gray
from vhrdata.quarantine import QuarantineItem, Reason, write_quarantine
from vhrdata.records import SPLITS, fsync_path, read_records, records_fingerprint
from vhrdata.store import disk_format
from vhrdata.store.disk_format import (
    FORMAT,
    HEADER,
    HEADER_SIZE,
    INDEX_FILE,
    QUARANTINE_FILE,
    SCHEMA_VERSION,
    BUILD_LOCK_FILE,
    DATA_FILE,
    SHARD_META_FILE,
    WIDTHS_FILE,
    encode_record,
    record_key,
    shard_name,
    shard_relpath,
    write_json_atomic,
)
from vhrdata.ctc import ctc_frames_needed, frames_for_width
from vhrdata.workers import ordered_map, process_context

log = logging.getLogger(__name__)

DEFAULT_DOWNSAMPLE = 4
DEFAULT_INITIAL_MAP_SIZE = 64 << 20
# "auto" shards aim at this many image bytes per shard: big enough that a store has few files,
# small enough that a lost shard is cheap to rebuild and a fan-out has work to spread.
AUTO_SHARD_BYTES = 512 << 20
WIDTH_BIN = 32
CHUNK_RECORDS = 32
# A record stores label, id and writer with 16-bit lengths.
MAX_LABEL_BYTES = 0xFFFF

ProgressCallback = Callable[[int, int], None]


class ShardWriter:
    """Writes one shard: values appended in key order, map size grown on demand, renamed into place.

    Use as a context manager: a clean exit commits (writes shard.json and widths.npy, then renames
    the temporary folder to `path`); an exception discards the temporary folder.

    Args:
        path: the final shard folder, e.g. `STORE/train/shard-00000-of-00004.lmdb`.
        meta: fields copied into shard.json (identity, split, shard number, settings).
        initial_map_size: first LMDB map size in bytes; it doubles whenever a transaction fills it.
        txn_bytes: commit after about this many bytes, bounding memory held by a transaction.

    Example:
        >>> with ShardWriter(store / "train" / shard_name(0, 1), meta) as w:  # doctest: +SKIP
        ...     w.add(encode_record(image, "Hà Nội", "id-1", None))
    """

    def __init__(
        self,
        path: str | Path,
        meta: dict[str, Any] | None = None,
        *,
        initial_map_size: int = DEFAULT_INITIAL_MAP_SIZE,
        txn_bytes: int = 64 << 20,
    ):
        if initial_map_size < 4096:
            raise ValueError(f"initial_map_size must be at least one page (4096). Received: {initial_map_size}")
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.map_size = int(initial_map_size)
        self.env = lmdb.open(
            str(self.tmp), map_size=self.map_size, subdir=True, readahead=False, meminit=False,
            # Durability comes from the fsync before the final rename, not from every commit.
            sync=False, metasync=False,
        )
        self.txn_bytes = txn_bytes
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.count = 0
        self._sha = hashlib.sha256()
        self._widths: list[int] = []
        self._chars: set[str] = set()
        self._label_lengths: Counter = Counter()
        self._width_bins: Counter = Counter()
        self._image_bytes = 0
        self.capped = 0
        self.quarantined: list[dict[str, Any]] = []
        self.num_in = 0
        self.map_growths = 0
        self._done = False

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def add(self, value: bytes, *, capped: bool = False) -> None:
        """Append one encoded record (see `disk_format.encode_record`)."""
        _, _, _, h, w, tl, _, _ = HEADER.unpack_from(value)
        start = HEADER_SIZE + h * w
        text = value[start : start + tl].decode("utf-8")
        key = record_key(self.count)
        self._sha.update(key)
        self._sha.update(struct.pack("<Q", len(value)))
        self._sha.update(value)
        self._pending.append(value)
        self._pending_bytes += len(value)
        self.count += 1
        self.num_in += 1
        self._widths.append(w)
        self._chars.update(text)
        self._label_lengths[len(text)] += 1
        self._width_bins[w // WIDTH_BIN * WIDTH_BIN] += 1
        self._image_bytes += h * w
        self.capped += bool(capped)
        if self._pending_bytes >= self.txn_bytes:
            self._flush()

    def add_quarantined(self, item: QuarantineItem) -> None:
        """Record a refused input item; it is counted as input but not stored."""
        self.quarantined.append(item.to_dict())
        self.num_in += 1

    def _flush(self) -> None:
        if not self._pending:
            return
        first = self.count - len(self._pending)
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for i, value in enumerate(self._pending):
                        txn.put(record_key(first + i), value, append=True)
                break
            except lmdb.MapFullError:
                # The aborted transaction left nothing behind; grow the map and redo it whole.
                grown = max(self.map_size * 2, self.map_size + 2 * self._pending_bytes)
                self.map_size = int(math.ceil(grown / 4096) * 4096)
                self.env.set_mapsize(self.map_size)
                self.map_growths += 1
                log.debug("%s: map grown to %d bytes", self.path.name, self.map_size)
        self._pending.clear()
        self._pending_bytes = 0

    def commit(self) -> dict[str, Any]:
        """Finish the shard: flush, write its metadata, fsync, and rename it into place."""
        if self._done:
            raise StoreError(f"shard {self.path} was already committed or aborted")
        try:
            self._flush()
            self.env.sync(True)
        finally:
            self.env.close()
        self._done = True
        widths = np.asarray(self._widths, dtype=np.int32)
        np.save(self.tmp / WIDTHS_FILE, widths, allow_pickle=False)
        meta = {
            "data_bytes": os.path.getsize(self.tmp / DATA_FILE),
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            **self.meta,
            "count": self.count,
            "in": self.num_in,
            "sha256": self._sha.hexdigest(),
            "widths_sha256": hashlib.sha256(widths.tobytes()).hexdigest(),
            "image_bytes": self._image_bytes,
            "capped": self.capped,
            "alphabet": "".join(sorted(self._chars)),
            "label_length_histogram": {str(k): v for k, v in sorted(self._label_lengths.items())},
            "width_histogram": {str(k): v for k, v in sorted(self._width_bins.items())},
            "quarantined": self.quarantined,
        }
        write_json_atomic(self.tmp / SHARD_META_FILE, meta)
        # Readers open shards with lock=False, so the lock file is dead weight.
        (self.tmp / "lock.mdb").unlink(missing_ok=True)
        _fsync_dir_files(self.tmp)
        if self.path.exists():
            disk_format.forget_env(self.path)
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        fsync_path(self.path.parent)
        return meta

    def abort(self) -> None:
        """Discard everything written so far."""
        if not self._done:
            self._done = True
            try:
                self.env.close()
            except Exception:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _fsync_dir_files(d: Path) -> None:
    for p in d.iterdir():
        fsync_path(p)
    fsync_path(d)


# ---------------------------------------------------------------------------- preprocessing workers


@dataclass(frozen=True)
class _Row:
    id: str
    path: str
    text: str
    writer: str | None
    origin: str | None
    raw_text: str | None


def _die_with_parent(parent: int) -> None:
    """Make this worker process end when `parent` does, even after kill -9 or the OOM killer."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:  # fallback where prctl is unavailable (macOS) or was not inherited
        while True:
            threading.Event().wait(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="vhr-parent-watchdog", daemon=True).start()


def _worker_init(parent: int | None = None) -> None:
    import cv2

    _die_with_parent(os.getppid() if parent is None else parent)
    # Parallelism comes from the process pool; OpenCV threads would only fight over the cores.
    cv2.setNumThreads(1)


def _process_row(row: _Row, settings: PreprocessSettings, downsample: int, limits: SizeLimits) -> tuple:
    text_bytes = len(row.text.encode("utf-8"))
    if text_bytes > MAX_LABEL_BYTES:
        return ("q", Reason.LABEL_TOO_LONG.value,
                f"label is {text_bytes:,} bytes of UTF-8, over the store's limit of {MAX_LABEL_BYTES:,}")
    try:
        gray = decode_image(row.path, limits)
    except ImageDecodeError as ex:
        return ("q", getattr(ex, "reason", Reason.UNDECODABLE_IMAGE).value, str(ex))
    image, capped = preprocess_gray(gray, settings)
    frames = frames_for_width(image.shape[1], downsample)
    needed = ctc_frames_needed(row.text)
    if needed > frames:
        repeats = needed - len(row.text)
        return (
            "q",
            Reason.CTC_INFEASIBLE.value,
            f"label needs {needed} CTC frames ({len(row.text)} characters + {repeats} repeated pairs) but the "
            f"preprocessed image is {image.shape[1]} px wide{' (squeezed to max_width)' if capped else ''}, "
            f"giving {frames} frames at downsample {downsample}; check the label or the crop, or build with a "
            f"smaller --downsample or a larger {'--max-width' if capped else '--height'}",
        )
    return ("ok", encode_record(image, row.text, row.id, row.writer), capped)


def _process_rows(settings_json: str, downsample: int, rows: Sequence[_Row], limits: SizeLimits | None = None) -> list[tuple]:
    """Preprocess and encode a chunk. Returns ("ok", value, capped) or ("q", reason, message) per row.

    Never raises for one record: anything unexpected (an OpenCV error, an encoding limit) quarantines
    that record as build_failed with the exception text, and the rest of the chunk goes on.
    """
    settings = PreprocessSettings.from_json(settings_json)
    limits = limits or SizeLimits()
    out: list[tuple] = []
    for row in rows:
        try:
            out.append(_process_row(row, settings, downsample, limits))
        except MemoryError:
            raise
        except Exception as ex:  # noqa: BLE001 - one bad record must not abort the build
            detail = " ".join(f"{type(ex).__name__}: {ex}".split())[:500]
            out.append(("q", Reason.BUILD_FAILED.value, f"preprocessing failed: {detail}"))
    return out


def _map_chunks(
    settings_json: str, downsample: int, chunks: Iterable[list[_Row]], workers: int, limits: SizeLimits | None = None
) -> Iterator[list[tuple]]:
    """Results of `_process_rows` per chunk, in order; at most a few chunks in flight per worker.

    `workers` <= 1 works in this process. Worker processes die with this one (see `_die_with_parent`).
    """
    if workers <= 1:
        for chunk in chunks:
            yield _process_rows(settings_json, downsample, chunk, limits)
        return
    ctx = process_context()
    # With fork the workers' parent is this process; with forkserver it is the server, which
    # itself exits when this process dies.
    parent = os.getpid() if ctx.get_start_method() == "fork" else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(parent,))
    try:
        yield from ordered_map(
            _process_rows, ((settings_json, downsample, c, limits) for c in chunks), pool, ahead=3 * workers
        )
    except BrokenProcessPool:
        raise StoreError(
            "a preprocessing worker process died (out of memory, or killed); run the same command again "
            "to resume, with fewer --workers if memory is short"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------- build


@dataclass
class BuildResult:
    """What a `build_store` call did.

    Attributes:
        store: the store folder.
        index: the assembled index.json, or None while fanned-out shards are still missing.
        built: shards (as `split/shard-...lmdb`) written by this call.
        kept: finished shards from an earlier run that were reused.
        missing: shards that still have to be built before the index can be assembled.
        counts: {"in", "stored", "quarantined", "by_reason"} over the shards this call covered.
        capped: lines wider than max_width that were squeezed to it.
    """

    store: Path
    index: dict[str, Any] | None
    built: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    capped: int = 0


@dataclass
class _ShardPlan:
    split: str
    index: int
    count: int
    rows: list[_Row]

    @property
    def relpath(self) -> str:
        return shard_relpath(self.split, self.index, self.count)


def _validate_splits(df: pd.DataFrame) -> None:
    bad = df["split"].isna() | ~df["split"].isin(SPLITS)
    if bad.any():
        values = sorted({str(v) for v in df.loc[bad, "split"]})
        raise StoreError(
            f"{int(bad.sum())} records have split values {values}, expected one of {list(SPLITS)}; "
            "re-run `vhrdata split`"
        )


def _auto_shard_count(part: pd.DataFrame, settings: PreprocessSettings) -> int:
    h = part["height"].clip(lower=1).to_numpy(dtype=np.float64)
    w = part["width"].to_numpy(dtype=np.float64)
    est_w = np.minimum(np.maximum(1, np.round(w * settings.height / h)), settings.max_width)
    est_bytes = float(est_w.sum()) * settings.height
    return max(1, math.ceil(est_bytes / AUTO_SHARD_BYTES))


def _plan(df: pd.DataFrame, settings: PreprocessSettings, shards: int | str) -> list[_ShardPlan]:
    plans: list[_ShardPlan] = []
    for split in SPLITS:
        part = df[df["split"] == split]
        if part.empty:
            continue
        # A canonical order makes keys, shard assignment and content hashes independent of row order.
        part = part.sort_values(["id", "sha1", "text"], kind="stable")
        n_shards = _auto_shard_count(part, settings) if shards == "auto" else int(shards)
        rows = [
            _Row(
                str(r.id), str(r.path), str(r.text), None if _isnull(r.writer) else str(r.writer),
                None if _isnull(getattr(r, "origin", None)) else str(r.origin),
                None if _isnull(getattr(r, "raw_text", None)) else str(r.raw_text),
            )
            for r in part.itertuples(index=False)
        ]
        n = len(rows)
        for i in range(n_shards):
            plans.append(_ShardPlan(split, i, n_shards, rows[i * n // n_shards : (i + 1) * n // n_shards]))
    return plans


def _isnull(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _identity(settings: PreprocessSettings, fingerprint: str, downsample: int) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "settings_hash": settings.hash(),
        "records_fingerprint": fingerprint,
        "downsample": downsample,
    }


def _describe_mismatch(where: str, old: dict[str, Any], new: dict[str, Any], old_settings: dict | None,
                       settings: PreprocessSettings) -> str:
    reasons = []
    if old.get("settings_hash") != new["settings_hash"]:
        try:
            diff = PreprocessSettings.from_dict(old_settings or {}).diff(settings)
        except (TypeError, ValueError):
            diff = []
        reasons.append("other preprocessing settings" + (f" ({'; '.join(diff)})" if diff else ""))
    if old.get("records_fingerprint") != new["records_fingerprint"]:
        reasons.append("other records (the records fingerprint differs)")
    if old.get("downsample") != new["downsample"]:
        reasons.append(f"another downsample ({old.get('downsample')} != {new['downsample']})")
    if old.get("schema_version") != new["schema_version"]:
        reasons.append(f"store schema version {old.get('schema_version')}")
    text = f"{where} was built with {', '.join(reasons) or 'other inputs'}"
    try:
        old_flags = PreprocessSettings.from_dict(old_settings or {}).cli_flags()
    except (TypeError, ValueError):
        old_flags = None
    if old_flags and old.get("records_fingerprint") == new["records_fingerprint"]:
        text += (f"; to resume it, run the build with its own flags: `vhrdata build-lmdb RECORDS --out {_store_of(where)} "
                 f"{old_flags} --downsample {old.get('downsample')}`")
    return text


def _store_of(where: str) -> str:
    p = Path(where)
    return str(p.parent.parent) if p.name.startswith("shard-") else str(p)


def _existing_shards(out: Path) -> list[Path]:
    return sorted(p for split in SPLITS for p in (out / split).glob("shard-*.lmdb") if p.is_dir())


def _check_existing(out: Path, plans: list[_ShardPlan], identity: dict, settings: PreprocessSettings) -> None:
    """Refuse to mix: every finished shard and index.json must come from the same inputs and plan."""
    fix = (f"or replace it with `vhrdata build-lmdb RECORDS --out {out} {settings.cli_flags()} --overwrite`, "
           "or build into another --out folder")
    index_path = out / INDEX_FILE
    if index_path.exists():
        index = disk_format.read_json(index_path)
        old = (index or {}).get("build", {}).get("identity", {}) if isinstance(index, dict) else {}
        if old != identity:
            raise StoreError(
                _describe_mismatch(str(out), old, identity, (index or {}).get("settings"), settings) + f"; {fix}"
            )
    expected = {p.relpath for p in plans}
    for shard in _existing_shards(out):
        rel = f"{shard.parent.name}/{shard.name}"
        if rel not in expected:
            raise StoreError(
                f"{out} holds {rel}, which this build would not write (another shard count or other records); {fix}"
            )
        meta_path = shard / SHARD_META_FILE
        meta = disk_format.read_json(meta_path) if meta_path.exists() else None
        if not isinstance(meta, dict) or meta.get("identity") != identity:
            old = meta.get("identity", {}) if isinstance(meta, dict) else {}
            raise StoreError(
                _describe_mismatch(f"{out}/{rel}", old, identity, (meta or {}).get("settings"), settings) + f"; {fix}"
            )


def _check_out_folder(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise StoreError(f"{out} exists and is not a folder; choose another --out")
    entries = [p.name for p in out.iterdir()]
    ours = {INDEX_FILE, QUARANTINE_FILE, *SPLITS}
    foreign = [e for e in entries if e not in ours and not e.startswith(".")]
    if foreign:
        raise StoreError(
            f"{out} is not empty and does not look like a store (it holds {', '.join(sorted(foreign)[:5])}); "
            "choose a new or empty --out folder"
        )


def _clear(out: Path, shard_index: int | None) -> None:
    (out / INDEX_FILE).unlink(missing_ok=True)
    (out / QUARANTINE_FILE).unlink(missing_ok=True)
    pattern = "shard-*" if shard_index is None else f"shard-{shard_index:05d}-of-*"
    for split in SPLITS:
        d = out / split
        if not d.is_dir():
            continue
        for p in list(d.glob(pattern)) + list(d.glob(f".{pattern}.tmp-*")):
            disk_format.forget_env(p)
            shutil.rmtree(p, ignore_errors=True)


def build_store(
    records: str | Path | pd.DataFrame,
    out: str | Path,
    settings: PreprocessSettings | None = None,
    *,
    downsample: int = DEFAULT_DOWNSAMPLE,
    shards: int | str = "auto",
    shard_index: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    assemble_only: bool = False,
    initial_map_size: int = DEFAULT_INITIAL_MAP_SIZE,
    callback: ProgressCallback | None = None,
    limits: SizeLimits | None = None,
) -> BuildResult:
    """Preprocess every record once and write them into a sharded LMDB store.

    Args:
        records: an ingest output folder (records.parquet with a split column) or a records frame.
        out: the store folder.
        settings: preprocessing settings; defaults to `PreprocessSettings()`.
        downsample: the model's width downsampling factor, for the CTC feasibility check.
        shards: shards per split, or "auto" (about 512 MiB of images per shard).
        shard_index: build only this shard of every split (fan-out); needs an integer `shards`.
        workers: preprocessing processes; None or 0 = one per available core, 1 = in this process.
        overwrite: delete an existing store (or, with `shard_index`, that shard) and rebuild.
        assemble_only: build nothing, only assemble index.json from finished shards.
        initial_map_size: first LMDB map size per shard; it grows by itself.
        callback: called as `callback(done, total)` with record counts while building.
        limits: image size limits checked from each header before decoding; defaults to the limits
            ingest used (from its ingest.json), else `SizeLimits()`.

    Returns:
        A BuildResult; its `index` is None while fanned-out shards are still missing.

    Raises:
        StoreError: the folder holds a store of other settings or records (without `overwrite`),
            or is not a store, or (with `assemble_only`) shards are missing, or another build holds
            the store's lock, or the disk is full or failing (the previous store is left intact).
        RecordsError: the records cannot be read or have no split column.

    Example:
        >>> result = build_store("work/cinnamon", "work/store", PreprocessSettings(height=64))  # doctest: +SKIP
        >>> result.counts["stored"]  # doctest: +SKIP
        1500
    """
    settings = settings or PreprocessSettings()
    out = Path(out)
    if downsample < 1:
        raise ValueError(f"downsample must be a positive integer. Received: downsample={downsample}")
    if shards != "auto" and (not isinstance(shards, int) or shards < 1):
        raise ValueError(f"shards must be 'auto' or a positive integer. Received: shards={shards!r}")
    if shard_index is not None:
        if shards == "auto":
            raise ValueError("building one shard alone needs an explicit shard count (shards=N), not 'auto'")
        if not 0 <= shard_index < shards:
            raise ValueError(f"shard_index must be in [0, {shards}). Received: shard_index={shard_index}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (one per core), 1 (this process) or more. Received: workers={workers}")
    if not workers:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    if isinstance(records, pd.DataFrame):
        df = records
        if "split" not in df.columns:
            raise StoreError("records have no split column; run `vhrdata split` first")
        records_dir = None
    else:
        df = read_records(records, require_split=True)
        records_dir = str(Path(records).resolve())
    _validate_splits(df)
    fingerprint = records_fingerprint(df)
    identity = _identity(settings, fingerprint, downsample)
    plans = _plan(df, settings, shards)
    if not plans:
        raise StoreError("the records are empty; nothing to build")

    _check_out_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise _write_error(ex, out) from None
    limits = limits or _ingest_limits(records_dir)
    args = (df, len(df), records_dir, settings, identity, plans, downsample, shards, shard_index, workers,
            assemble_only, initial_map_size, callback, limits)
    with _BuildLock(out, shard_index):
        try:
            if overwrite and not assemble_only and shard_index is None:
                _remove_stale_staging(out)
                if (out / INDEX_FILE).exists() or _existing_shards(out):
                    return _rebuild_staged(out, args)
            return _build_locked(out, overwrite, *args)
        except (OSError, lmdb.Error) as ex:
            raise _write_error(ex, out) from None


def _build_locked(
    out: Path, overwrite: bool, df: pd.DataFrame, num_records: int, records_dir: str | None,
    settings: PreprocessSettings, identity: dict, plans: list, downsample: int, shards: int | str,
    shard_index: int | None, workers: int, assemble_only: bool, initial_map_size: int,
    callback: ProgressCallback | None, limits: SizeLimits,
) -> BuildResult:
    if overwrite and not assemble_only:
        _clear(out, shard_index)
    _check_existing(out, plans, identity, settings)

    base_meta = {
        "identity": identity,
        "settings": settings.to_dict(),
        "vhr_version": __version__,
    }
    scope = [p for p in plans if shard_index is None or p.index == shard_index]
    todo = [] if assemble_only else [p for p in scope if not (out / p.relpath / SHARD_META_FILE).exists()]
    todo_paths = {p.relpath for p in todo}
    kept = [p.relpath for p in scope if p.relpath not in todo_paths]
    if todo:
        # A store is complete only with index.json; take it away before anything changes.
        (out / INDEX_FILE).unlink(missing_ok=True)
        _build_shards(out, todo, settings, downsample, workers, base_meta, initial_map_size, callback, limits)

    missing = [p.relpath for p in plans if not (out / p.relpath / SHARD_META_FILE).exists()]
    index = None
    if not missing and not todo and (out / INDEX_FILE).exists():
        index = disk_format.read_json(out / INDEX_FILE)  # up to date; its identity was checked above
    elif not missing:
        index = _assemble(out, plans, identity, settings, downsample, num_records, records_dir, shards)
    elif assemble_only:
        raise StoreError(
            f"cannot assemble {out}: {len(missing)} shards are not built yet ({', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}); build them with --shard-index"
        )
    metas = [disk_format.read_json(out / p.relpath / SHARD_META_FILE) for p in scope if p.relpath not in missing]
    counts = _sum_counts(metas)
    return BuildResult(
        store=out, index=index, built=[p.relpath for p in todo], kept=kept, missing=missing,
        counts=index["counts"] if index else counts, capped=sum(m["capped"] for m in metas),
    )


#: What a failed --overwrite rebuild leaves, when the old store is back in place.
_OLD_STORE_KEPT = "the previous store is kept as it was (the unfinished rebuild was removed)"


def _rebuild_staged(out: Path, args: tuple) -> BuildResult:
    """--overwrite of a whole store: build beside the old one, then swap, so a failure keeps the old store.

    The swap moves the old store's files aside (index.json first) and the new ones in (index.json
    last). A failed rename undoes the moves made so far, in reverse, so OUT again holds the old
    store; only when that undo fails too are both folders left for the message to name.
    """
    staging = out / f".rebuild-{socket.gethostname()}-{os.getpid()}"
    replaced = out / f".replaced-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    tidy = True
    try:
        try:
            result = _build_locked(staging, False, *args)
        except (OSError, lmdb.Error) as ex:
            raise StoreError(write_failure(ex, out, _OLD_STORE_KEPT)) from None
        if result.index is None:  # cannot happen for a whole build; keep the old store then
            raise StoreError(f"the rebuild of {out} did not finish; the old store is unchanged")
        replaced.mkdir()
        try:
            _swap(out, staging, replaced)
        except _SwapFailed as failed:
            tidy = failed.undone
            raise StoreError(failed.message) from None
        try:
            fsync_path(out)
        except OSError as ex:  # after the swap: the old store is gone, say so
            raise StoreError(write_failure(ex, out, "the rebuilt store is in place, but the disk did not confirm "
                                                    "it is saved", elsewhere="")) from None
    finally:
        if tidy:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(replaced, ignore_errors=True)
    result.store = out
    return result


class _SwapFailed(Exception):
    """A rename of the swap failed; `undone` says whether OUT holds the old store again."""

    def __init__(self, message: str, undone: bool):
        super().__init__(message)
        self.message = message
        self.undone = undone


def _move(src: Path, dst: Path) -> None:
    """One rename of the --overwrite swap (a name of its own, so tests can fail each one)."""
    os.replace(src, dst)


def _swap(out: Path, staging: Path, replaced: Path) -> None:
    """Put the store built in `staging` in place of the one in `out`, whose files go to `replaced`.

    Raises:
        _SwapFailed: a rename failed; the moves made so far were undone (or, if the undo failed too,
            the message says where each store's files are).
    """
    done: list[tuple[Path, Path]] = []
    try:
        # index.json leaves first and comes back last: in between the folder is "not finished".
        for name in (INDEX_FILE, QUARANTINE_FILE, *SPLITS):
            if (out / name).exists():
                for shard in (out / name).glob("shard-*.lmdb") if name in SPLITS else ():
                    disk_format.forget_env(shard)
                _move(out / name, replaced / name)
                done.append((out / name, replaced / name))
        for name in (*SPLITS, QUARANTINE_FILE, INDEX_FILE):
            if (staging / name).exists():
                _move(staging / name, out / name)
                done.append((staging / name, out / name))
    except BaseException as ex:
        try:
            for src, dst in reversed(done):
                _move(dst, src)
        except OSError as undo:
            raise _SwapFailed(write_failure(
                undo, out, f"the swap of the rebuilt store failed and could not be undone, so {out} holds no "
                f"usable store (the previous store's files are in {replaced}, the rebuilt one's in {staging}); "
                "the same command rebuilds it", elsewhere=""), undone=False) from None
        if not isinstance(ex, OSError):
            raise
        raise _SwapFailed(write_failure(ex, out, _OLD_STORE_KEPT), undone=True) from None


def _remove_stale_staging(out: Path) -> None:
    """Staging folders of killed --overwrite runs (only called while holding the exclusive lock)."""
    for p in list(out.glob(".rebuild-*")) + list(out.glob(".replaced-*")):
        shutil.rmtree(p, ignore_errors=True)


def _ingest_limits(records_dir: str | None) -> SizeLimits:
    """The image size limits ingest applied to these records (so build accepts what ingest kept)."""
    if records_dir:
        try:
            from vhrdata.ingest import read_ingest_report

            raw = read_ingest_report(records_dir).get("settings", {}).get("limits")
            if isinstance(raw, dict):
                return SizeLimits(**raw)
        except Exception:  # noqa: BLE001 - an unreadable ingest.json only means default limits
            pass
    return SizeLimits()


def _write_error(ex: BaseException, out: Path) -> StoreError:
    """A failed write of the store (an OSError or LMDB's error), worded by `errors.write_failure`."""
    return StoreError(write_failure(ex, out, "finished shards and any previous store are kept, and the same "
                                             "command resumes the build"))


class _BuildLock:
    """An fcntl lock file in the store folder: one whole build at a time, or several fanned-out shards.

    A whole build takes the lock exclusively; `--shard-index` jobs share it, each also holding its
    own shard's lock. The kernel drops the locks when a process dies, kill -9 included.
    """

    def __init__(self, out: Path, shard_index: int | None):
        self.out = out
        self.shard_index = shard_index
        self.fds: list[int] = []

    def _take(self, path: Path, shared: bool, what: str) -> None:
        try:
            fd = take_lock(path, shared=shared)
        except LockBusy as ex:
            raise StoreError(
                f"{self.out}: store locked by {ex.holder} (another `vhrdata build-lmdb` is writing {what}); "
                "wait for it to finish or stop it, then run again"
            ) from None
        if fd is not None:
            self.fds.append(fd)

    def __enter__(self) -> "_BuildLock":
        try:
            if self.shard_index is None:
                self._take(self.out / BUILD_LOCK_FILE, False, "it")
            else:
                self._take(self.out / BUILD_LOCK_FILE, True, "its shards")
                self._take(self.out / f".build-shard-{self.shard_index:05d}.lock", False,
                           f"shard {self.shard_index}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        while self.fds:
            release_lock(self.fds.pop())


def _build_shards(
    out: Path,
    todo: list[_ShardPlan],
    settings: PreprocessSettings,
    downsample: int,
    workers: int,
    base_meta: dict,
    initial_map_size: int,
    callback: ProgressCallback | None,
    limits: SizeLimits | None = None,
) -> None:
    total = sum(len(p.rows) for p in todo)
    done = 0
    if callback:
        callback(0, total)
    # Stale temporary folders of killed runs; finished shards were renamed and are never touched.
    for p in todo:
        for stale in (out / p.split).glob(f".{shard_name(p.index, p.count)}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    chunks = [(p, p.rows[i : i + CHUNK_RECORDS]) for p in todo for i in range(0, max(len(p.rows), 1), CHUNK_RECORDS)]
    if total <= CHUNK_RECORDS:
        workers = 1  # starting processes costs more than the work
    results = _map_chunks(settings.to_json(), downsample, (rows for _, rows in chunks), min(workers, len(chunks)),
                          limits)
    writer: ShardWriter | None = None
    try:
        for (plan, rows), result in zip(chunks, results):
            if writer is None or writer.meta["relpath"] != plan.relpath:
                if writer is not None:
                    writer.commit()
                meta = {**base_meta, "split": plan.split, "shard": plan.index, "num_shards": plan.count,
                        "relpath": plan.relpath}
                writer = ShardWriter(out / plan.relpath, meta, initial_map_size=initial_map_size)
            for row, res in zip(rows, result):
                if res[0] == "ok":
                    writer.add(res[1], capped=res[2])
                else:
                    log.info("quarantined %s: %s", row.id, res[2])
                    writer.add_quarantined(QuarantineItem(
                        reason=res[1], message=res[2], id=row.id, path=row.path, origin=row.origin,
                        raw_text=row.raw_text,
                    ))
            done += len(rows)
            if callback:
                callback(done, total)
        if writer is not None:
            writer.commit()
            writer = None
    finally:
        if writer is not None:
            writer.abort()


def _sum_counts(metas: list[dict]) -> dict[str, Any]:
    by_reason: Counter = Counter(q["reason"] for m in metas for q in m["quarantined"])
    return {
        "in": sum(m["in"] for m in metas),
        "stored": sum(m["count"] for m in metas),
        "quarantined": sum(by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
    }


def _merge_hist(metas: list[dict], key: str) -> dict[str, int]:
    total: Counter = Counter()
    for m in metas:
        total.update({int(k): v for k, v in m[key].items()})
    return {str(k): v for k, v in sorted(total.items())}


def _assemble(
    out: Path,
    plans: list[_ShardPlan],
    identity: dict,
    settings: PreprocessSettings,
    downsample: int,
    num_records: int,
    records_dir: str | None,
    shards: int | str,
) -> dict[str, Any]:
    """Write index.json (and the merged quarantine.jsonl) from the finished shards' metadata."""
    splits: dict[str, Any] = {}
    all_metas: list[dict] = []
    for split in SPLITS:
        sp = [p for p in plans if p.split == split]
        if not sp:
            continue
        metas = []
        for p in sp:
            meta = disk_format.read_json(out / p.relpath / SHARD_META_FILE)
            if meta.get("identity") != identity or meta.get("count") is None:
                raise StoreError(f"{out}/{p.relpath} does not belong to this build; rebuild it with --overwrite")
            if meta["in"] != len(p.rows):
                raise StoreError(
                    f"{out}/{p.relpath} holds {meta['in']} input records, the plan {len(p.rows)}; rebuild it"
                )
            metas.append(meta)
        all_metas.extend(metas)
        offset = 0
        shard_entries = []
        for p, m in zip(sp, metas):
            shard_entries.append({
                "path": p.relpath, "count": m["count"], "first": offset, "sha256": m["sha256"],
                "widths_sha256": m["widths_sha256"], "image_bytes": m["image_bytes"],
                **({"data_bytes": m["data_bytes"]} if "data_bytes" in m else {}),
            })
            offset += m["count"]
        counts = _sum_counts(metas)
        splits[split] = {
            "count": counts["stored"],
            "in": counts["in"],
            "quarantined": counts["quarantined"],
            "capped": sum(m["capped"] for m in metas),
            "image_bytes": sum(m["image_bytes"] for m in metas),
            "alphabet": "".join(sorted(set("".join(m["alphabet"] for m in metas)))),
            "width_histogram": _merge_hist(metas, "width_histogram"),
            "label_length_histogram": _merge_hist(metas, "label_length_histogram"),
            "shards": shard_entries,
        }
    counts = _sum_counts(all_metas)
    if counts["in"] != num_records or counts["stored"] + counts["quarantined"] != counts["in"]:
        raise StoreError(
            f"counts do not reconcile: {num_records} records, shards saw {counts['in']}, stored "
            f"{counts['stored']} + quarantined {counts['quarantined']}; rebuild with --overwrite"
        )
    train_chars = set(splits.get("train", {}).get("alphabet", ""))
    for name, info in splits.items():
        info["chars_not_in_train"] = "".join(sorted(set(info["alphabet"]) - train_chars)) if train_chars else ""
    index = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "settings": settings.to_dict(),
        "settings_hash": settings.hash(),
        "alphabet": "".join(sorted(set("".join(s["alphabet"] for s in splits.values())))),
        "counts": counts,
        "splits": splits,
        "build": {
            "identity": identity,
            "downsample": downsample,
            "records_fingerprint": identity["records_fingerprint"],
            "records": records_dir,
            "shards": shards,
            "width_bin": WIDTH_BIN,
            "vhr_version": __version__,
        },
    }
    items = [QuarantineItem(**q) for m in all_metas for q in m["quarantined"]]
    # A unique name first: fanned-out jobs finishing together may both assemble (identical content).
    tmp = out / f".{QUARANTINE_FILE}.{socket.gethostname()}-{os.getpid()}"
    write_quarantine(items, tmp)
    os.replace(tmp, out / QUARANTINE_FILE)
    write_json_atomic(out / INDEX_FILE, index)
    return index
