"""records.parquet: the cleaned, self-describing manifest every later stage reads.

The file carries its schema version in the parquet key-value metadata, and `read_records`
refuses a file of another version instead of misreading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vhrdata.errors import RecordsError

SCHEMA_VERSION = 1
RECORDS_FILE = "records.parquet"
META_KEY = b"vhr.records"

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
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def is_vhr_records(path: str | Path) -> bool:
    """Whether `path` is a parquet file that vhr wrote (of any schema version)."""
    try:
        return META_KEY in (pq.read_schema(records_path(path)).metadata or {})
    except Exception:  # pyarrow raises several types for a non-parquet file
        return False


def read_records_meta(directory: str | Path) -> dict[str, Any]:
    """The vhr metadata stored in records.parquet (schema_version and whatever ingest/split added)."""
    path = records_path(directory)
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
    import hashlib

    cols = [c for c in ("id", "sha1", "text", "split") if c in df.columns]
    rows = sorted("\x1f".join(str(v) for v in row) for row in df[cols].itertuples(index=False))
    h = hashlib.sha256()
    for r in rows:
        h.update(r.encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()
