"""records.parquet: the cleaned, self-describing manifest every later stage reads, and its folder.

The file carries its schema version in the parquet key-value metadata, and `read_records`
refuses a file of another version instead of misreading it.

A records folder, as ingest writes it, holds records.parquet, quarantine.jsonl and ingest.json as one
unit. Ingest writes the three into a staging folder, and its commit point is one rename of that folder
to `.ingest-commit`; the files are then moved into place, ingest.json last. Whoever finds a
`.ingest-commit` left by a killed run finishes those moves (`finish_interrupted_commit`), so a reader
sees either the previous three files or the new three, never a mix. ingest.json names the run
(`run_id`, also in records.parquet's metadata, which `vhrdata split` keeps) and the size and sha256 of
quarantine.jsonl, and `read_records` checks them (`check_records_folder`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vhrdata.errors import OutputNotWritable, RecordsError, write_failure
from vhrdata.locks import LockBusy, release_lock, take_lock
from vhrdata.quarantine import QUARANTINE_FILE

SCHEMA_VERSION = 1
RECORDS_FILE = "records.parquet"
INGEST_FILE = "ingest.json"
META_KEY = b"vhr.records"
COMMIT_DIR = ".ingest-commit"  # a complete staged output whose moves into place have begun
LOCK_FILE = ".ingest.lock"  # held by ingest for its whole run, by split and by a reader finishing a commit
COMMIT_ORDER = (QUARANTINE_FILE, RECORDS_FILE, INGEST_FILE)  # ingest.json last: it names the run
FINISH_WAIT_S = 30.0  # how long a reader waits for a live ingest that is moving its files into place

COLUMNS = ["id", "source", "writer", "path", "text", "raw_text", "width", "height", "sha1", "origin"]
SPLITS = ("train", "val", "test")


def records_path(directory: str | Path) -> Path:
    """Path of records.parquet inside an ingest output folder (or the file itself)."""
    p = Path(directory)
    return p if p.suffix == ".parquet" else p / RECORDS_FILE


def empty_records() -> pd.DataFrame:
    """A records frame with the right columns and no rows."""
    df = pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    df["width"] = df["width"].astype("int64")
    df["height"] = df["height"].astype("int64")
    return df


def write_records(df: pd.DataFrame, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `df` as records.parquet with the schema version and `meta` in its metadata.

    The file is written under a temporary name and renamed, so a reader never sees half a file.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise RecordsError(f"records are missing columns {missing}")
    path = records_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = df.reset_index(drop=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    info = {"schema_version": SCHEMA_VERSION, **(meta or {})}
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(info, ensure_ascii=False).encode()}
    )
    tmp = path.with_name(path.name + ".tmp")
    try:
        pq.write_table(table, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_error(ex: OSError, out: Path, what: str, elsewhere: str = "or choose another --out") -> OutputNotWritable:
    """A failed write into a records folder whose previous files are kept (worded by `errors.write_failure`).

    Args:
        ex: the error (pyarrow's carry no errno, only the system's words).
        out: the folder.
        what: the file or step that failed.
        elsewhere: the alternative to fixing the disk ("" for split, which writes in place).
    """
    return OutputNotWritable(write_failure(ex, out, f"the previous output in {out} is unchanged", what, elsewhere))


def is_vhr_records(path: str | Path) -> bool:
    """Whether `path` is a parquet file that vhr wrote (of any schema version)."""
    try:
        return META_KEY in (pq.read_schema(records_path(path)).metadata or {})
    except Exception:  # pyarrow raises several types for a non-parquet file
        return False


def read_records_meta(directory: str | Path) -> dict[str, Any]:
    """The vhr metadata stored in records.parquet (schema_version and whatever ingest/split added).

    A records folder that ingest wrote is checked first (`check_records_folder`).
    """
    return _checked_meta(records_path(directory), require_ingest=False)


def _checked_meta(path: Path, require_ingest: bool) -> dict[str, Any]:
    # A live ingest may move its files in while we look: then its commit folder exists, and the second
    # look (after waiting for it) sees the finished output.
    for attempt in range(3):
        finish_interrupted_commit(path.parent)
        info = _read_meta(path)
        if not (info.get("ingest") or {}).get("run_id"):
            if require_ingest:
                raise RecordsError(f"{path} was not written by `vhrdata ingest` of this version; "
                                   "re-run `vhrdata ingest`")
            return info
        problem = _folder_problem(path.parent, info)
        if problem is None:
            return info
        if not (path.parent / COMMIT_DIR).exists() and attempt:
            break
    raise RecordsError(problem)


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RecordsError(f"{path} does not exist; run `vhrdata ingest` first")
    try:
        md = pq.read_schema(path).metadata or {}
    except Exception as ex:  # pyarrow raises several types for a non-parquet file
        raise RecordsError(f"{path} is not a readable parquet file: {ex}") from None
    if META_KEY not in md:
        raise RecordsError(f"{path} was not written by vhr (no {META_KEY.decode()} metadata)")
    info = json.loads(md[META_KEY])
    version = info.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordsError(
            f"{path} has records schema version {version}, this vhr reads version {SCHEMA_VERSION}; "
            "re-run `vhrdata ingest` with this version"
        )
    return info


def read_records(directory: str | Path, *, require_split: bool = False) -> pd.DataFrame:
    """Read records.parquet after checking its schema version.

    Args:
        directory: the ingest output folder, or the parquet file itself.
        require_split: raise RecordsError unless a `split` column is present.
    """
    path = records_path(directory)
    read_records_meta(path)
    df = pd.read_parquet(path)
    if require_split and "split" not in df.columns:
        raise RecordsError(f"{path} has no split column; run `vhrdata split {path.parent}` first")
    return df


def records_fingerprint(df: pd.DataFrame) -> str:
    """A sha256 over what a store is built from (id, sha1, text, split), independent of row order."""
    cols = [c for c in ("id", "sha1", "text", "split") if c in df.columns]
    rows = sorted("\x1f".join(str(v) for v in row) for row in df[cols].itertuples(index=False))
    h = hashlib.sha256()
    for r in rows:
        h.update(r.encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


# ----------------------------------------------------------------------------- the records folder


def file_facts(path: str | Path) -> dict:
    """{"bytes", "sha256"} of a file, as ingest.json records them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": Path(path).stat().st_size, "sha256": h.hexdigest()}


def lock_records_folder(directory: str | Path, wait_s: float = 0.0) -> int | None:
    """Take the records folder's write lock (see `vhrdata.locks.take_lock`).

    Raises:
        RecordsError: another process holds it; the message names its pid.
    """
    directory = Path(directory)
    try:
        return take_lock(directory / LOCK_FILE, wait_s=wait_s)
    except LockBusy as ex:
        raise RecordsError(
            f"{directory}: records folder locked by {ex.holder} (another `vhrdata ingest` or `vhrdata split` "
            "is writing it); wait for it to finish or stop it, then run again"
        ) from None


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_staged(directory: Path, staged: Path, stale: tuple[str, ...] = ()) -> None:
    """Make the three files in `staged` (a synced folder inside `directory`) the folder's output.

    The rename of `staged` to `.ingest-commit` is the commit point: before it the previous output is
    untouched, after it the new output is complete on disk and `finish_interrupted_commit` completes the
    moves, even after a kill. The caller holds the folder's lock.

    Args:
        directory: the records folder.
        staged: a folder inside it holding records.parquet, quarantine.jsonl and ingest.json.
        stale: other file names in `directory` that the new output makes wrong (removed in the same commit).
    """
    commit = directory / COMMIT_DIR
    (staged / ".stale").write_text("\n".join(stale), encoding="utf-8")
    fsync_path(staged)
    os.rename(staged, commit)
    fsync_path(directory)
    _finish(directory)


def _finish(directory: Path) -> None:
    commit = directory / COMMIT_DIR
    marker = commit / ".stale"
    if marker.exists():  # removed only once the stale files are gone and the moves are done
        for name in marker.read_text(encoding="utf-8").split():
            (directory / name).unlink(missing_ok=True)
    for name in COMMIT_ORDER:
        if (commit / name).exists():
            os.replace(commit / name, directory / name)
    fsync_path(directory)
    marker.unlink(missing_ok=True)
    for leftover in commit.iterdir():
        leftover.unlink()
    commit.rmdir()
    fsync_path(directory)


def finish_interrupted_commit(directory: str | Path) -> None:
    """Complete the commit of an ingest that was killed after its commit point (a no-op without one).

    A live ingest in its last moves is waited for (up to FINISH_WAIT_S).

    Raises:
        RecordsError: the folder is locked for longer, or cannot be written; the message says what to do.
    """
    directory = Path(directory)
    if not (directory / COMMIT_DIR).exists():
        return
    try:
        fd = lock_records_folder(directory, wait_s=FINISH_WAIT_S)
    except OSError as ex:
        raise RecordsError(_cannot_finish(directory, ex)) from None
    try:
        if (directory / COMMIT_DIR).exists():
            _finish(directory)
    except OSError as ex:
        raise RecordsError(_cannot_finish(directory, ex)) from None
    finally:
        release_lock(fd)


def _cannot_finish(directory: Path, ex: OSError) -> str:
    return (f"{directory}: an ingest was killed while moving its output into place, and the move cannot be "
            f"finished here ({ex.strerror or ex}); run any vhrdata command on the folder with write access, "
            "or re-run `vhrdata ingest`")


def _folder_problem(directory: Path, info: dict) -> str | None:
    """Why records.parquet, quarantine.jsonl and ingest.json in `directory` are not one ingest's output."""
    run_id = info["ingest"]["run_id"]
    report_path = directory / INGEST_FILE
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        if not isinstance(report, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        return _inconsistent(directory, f"records.parquet has no {INGEST_FILE} beside it", info, {})
    except (OSError, ValueError) as ex:
        return _inconsistent(directory, f"{INGEST_FILE} is unreadable ({ex})", info, {})
    if report.get("run_id") != run_id:
        return _inconsistent(directory, f"records.parquet and {INGEST_FILE} come from different ingest runs", info,
                             report)
    facts = (report.get("files") or {}).get(QUARANTINE_FILE)
    q = directory / QUARANTINE_FILE
    if facts is not None and (not q.is_file() or file_facts(q) != facts):
        return _inconsistent(directory, f"{QUARANTINE_FILE} is not the file {INGEST_FILE} describes", info, report)
    kept = (report.get("counts") or {}).get("kept")
    rows = pq.read_metadata(directory / RECORDS_FILE).num_rows
    if kept is not None and rows != kept:
        return _inconsistent(directory, f"records.parquet has {rows} rows, {INGEST_FILE} says {kept} were kept",
                             info, report)
    return None


def _inconsistent(directory: Path, what: str, info: dict, report: dict) -> str:
    # The folder's own report names the source best; a records file copied in may come from elsewhere.
    src = report.get("src") or (info.get("ingest") or {}).get("src") or "SRC"
    return (f"{directory} is not one ingest's output: {what} (a copy, an edit, or a run that was stopped); "
            f"re-run `vhrdata ingest {src} --out {directory}`")


def check_records_folder(directory: str | Path) -> None:
    """Raise RecordsError unless `directory` holds one ingest run's records.parquet, quarantine.jsonl and
    ingest.json (finishing an interrupted commit first).

    Raises:
        RecordsError: a one-line message that says what is wrong and what to run.
    """
    directory = Path(directory)
    finish_interrupted_commit(directory)
    if not (directory / INGEST_FILE).exists():
        raise RecordsError(f"{directory} has no {INGEST_FILE}: the ingest did not finish; re-run `vhrdata ingest`")
    _checked_meta(directory / RECORDS_FILE, require_ingest=True)
