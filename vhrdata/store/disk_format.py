"""On-disk format of a store (distinct from `vhrdata.raw_formats`, the raw-dataset readers): file names, the record encoding, index.json, and LMDB environments.

```
STORE/index.json                                   schema, settings + hash, alphabet, counts, shards
STORE/quarantine.jsonl                             records refused at build time (e.g. ctc_infeasible)
STORE/<split>/shard-00000-of-00004.lmdb/data.mdb   the records, keys 000000000, 000000001, ...
STORE/<split>/shard-00000-of-00004.lmdb/shard.json this shard's own metadata (identity, count, hashes)
STORE/<split>/shard-00000-of-00004.lmdb/widths.npy int32 width of every record, in key order
```

A record value is a fixed header, then the image rows, then UTF-8 label, id and writer.
The CRC32 in the first four bytes covers every byte after it, so a flipped byte anywhere
in a record is caught.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from vhrdata.errors import StoreError

FORMAT = "vhr-store"
SCHEMA_VERSION = 1
INDEX_FILE = "index.json"
SHARD_META_FILE = "shard.json"
WIDTHS_FILE = "widths.npy"
QUARANTINE_FILE = "quarantine.jsonl"
BUILD_LOCK_FILE = ".build.lock"
SPLIT_ORDER = ("train", "val", "test")

RECORD_VERSION = 1
# crc32, record version, flags, height, width, text bytes, id bytes, writer bytes
HEADER = struct.Struct("<IBBHIHHH")
HEADER_SIZE = HEADER.size
FLAG_NO_WRITER = 1
KEY_DIGITS = 9


def shard_name(index: int, count: int) -> str:
    """`shard-00000-of-00004.lmdb`."""
    return f"shard-{index:05d}-of-{count:05d}.lmdb"


def shard_relpath(split: str, index: int, count: int) -> str:
    return f"{split}/{shard_name(index, count)}"


_SHARD_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})\.lmdb$")


def rebuild_hint(shard_dir: str | Path) -> str:
    """How to replace one damaged shard: re-copy it, or rebuild just that shard."""
    shard_dir = Path(shard_dir)
    store = shard_dir.parent.parent
    m = _SHARD_NAME.match(shard_dir.name)
    if not m:
        return f"re-copy the store, or rebuild it with `vhrdata build-lmdb RECORDS --out {store} --overwrite`"
    i, n = int(m.group(1)), int(m.group(2))
    return (f"re-copy {shard_dir.parent.name}/{shard_dir.name} from a good copy, or rebuild it with "
            f"`vhrdata build-lmdb RECORDS --out {store} --shards {n} --shard-index {i} --overwrite`")


def record_key(position: int) -> bytes:
    """Zero-padded decimal keys sort in insertion order, so a cursor scan is sequential on disk."""
    return b"%09d" % position


def encode_record(image: np.ndarray, text: str, rec_id: str, writer: str | None) -> bytes:
    """Pack one preprocessed record (uint8 H×W image, label, id, writer) with its CRC32."""
    h, w = image.shape
    tb, ib = text.encode("utf-8"), rec_id.encode("utf-8")
    wb = b"" if writer is None else str(writer).encode("utf-8")
    if max(len(tb), len(ib), len(wb)) > 0xFFFF:
        raise ValueError(f"label, id and writer must each be under 64 KiB. Received: id={rec_id[:80]!r}")
    flags = FLAG_NO_WRITER if writer is None else 0
    body = b"".join(
        (HEADER.pack(0, RECORD_VERSION, flags, h, w, len(tb), len(ib), len(wb))[4:], image.tobytes(), tb, ib, wb)
    )
    return struct.pack("<I", zlib.crc32(body)) + body


@dataclass(frozen=True)
class RecordView:
    """A decoded record; `image` may be a view into the LMDB map (copy it to keep it)."""

    image: np.ndarray
    text: str
    id: str
    writer: str | None


def decode_record(value, *, check_crc: bool = False) -> RecordView:
    """Unpack a record value (bytes or memoryview). Raises ValueError if it is malformed."""
    if len(value) < HEADER_SIZE:
        raise ValueError(f"record is {len(value)} bytes, shorter than its {HEADER_SIZE}-byte header")
    crc, version, flags, h, w, tl, il, wl = HEADER.unpack_from(value)
    if version != RECORD_VERSION:
        raise ValueError(f"record version {version}, expected {RECORD_VERSION}")
    end_img = HEADER_SIZE + h * w
    if len(value) != end_img + tl + il + wl:
        raise ValueError(f"record is {len(value)} bytes, its header says {end_img + tl + il + wl}")
    if check_crc and zlib.crc32(memoryview(value)[4:]) != crc:
        raise ValueError("CRC32 mismatch")
    image = np.frombuffer(value, dtype=np.uint8, count=h * w, offset=HEADER_SIZE).reshape(h, w)
    mv = memoryview(value)
    text = str(mv[end_img : end_img + tl], "utf-8")
    rec_id = str(mv[end_img + tl : end_img + tl + il], "utf-8")
    writer = None if flags & FLAG_NO_WRITER else str(mv[end_img + tl + il :], "utf-8")
    return RecordView(image, text, rec_id, writer)


def check_record(value) -> tuple:
    """The unpacked header of a record value, after checking its length and CRC32; ValueError if damaged.

    Touches no byte outside the value's own length, and the length is checked against the header
    before the CRC reads the whole value.
    """
    n = len(value)
    if n < HEADER_SIZE:
        raise ValueError(f"record is {n} bytes, shorter than its {HEADER_SIZE}-byte header")
    head = HEADER.unpack_from(value)
    crc, version, _, h, w, tl, il, wl = head
    if n != HEADER_SIZE + h * w + tl + il + wl:
        raise ValueError(f"record is {n} bytes, its header says {HEADER_SIZE + h * w + tl + il + wl}")
    if zlib.crc32(memoryview(value)[4:]) != crc:
        raise ValueError("CRC32 mismatch")
    if version != RECORD_VERSION:
        raise ValueError(f"record version {version}, expected {RECORD_VERSION}")
    return head


def record_crc_ok(value) -> bool:
    """True when the stored CRC32 matches the bytes after it."""
    if len(value) < 4:
        return False
    return struct.unpack_from("<I", value)[0] == zlib.crc32(memoryview(value)[4:])


# ---------------------------------------------------------------------------- index.json


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as ex:
        raise StoreError(f"{path} is not valid JSON ({ex}); rebuild the store with --overwrite") from None


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file under a unique temporary name and rename, so readers never see half a file.

    The one atomic writer of vhr's small files (store metadata, a run's JSON, LM files). A failed
    write (a full disk) removes its temporary file and leaves the previous `path` as it was.

    Returns:
        `path`.
    """
    path = Path(path)
    # Unique per host and process: fanned-out builds on a shared filesystem may write at once.
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any, *, indent: int = 1, sort_keys: bool = True,
                      finite: bool = False, default: Any = None) -> Path:
    """Write JSON through `write_text_atomic`.

    Args:
        path: the file.
        data: what to write.
        indent, sort_keys: the layout; the store's files use 1 and sorted keys, a run's files
            (train.json, state.json) 2 and the keys in their order.
        finite: write NaN and infinity as null (strict JSON) instead of as NaN.
        default: `json.dumps`'s fallback for other objects (e.g. `str` for paths).
    """
    text = json.dumps(_finite(data) if finite else data, ensure_ascii=False, indent=indent, sort_keys=sort_keys,
                      allow_nan=not finite, default=default)
    return write_text_atomic(path, text + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def is_store(path: str | Path) -> bool:
    """True when `path` holds a vhr store index (of any schema version; `open_store` checks more)."""
    index_path = Path(path) / INDEX_FILE
    if not index_path.is_file():
        return False
    try:
        with open(index_path, encoding="utf-8") as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_index(store: str | Path) -> dict[str, Any]:
    """Read and check STORE/index.json: format name and schema version."""
    store = Path(store)
    path = store / INDEX_FILE
    if not store.exists():
        raise StoreError(f"{store} does not exist; build it with `vhrdata build-lmdb RECORDS --out {store}`")
    if not path.exists():
        if not store.is_dir():
            raise StoreError(f"{store} is a file, not a store folder")
        shards = any(store.glob("*/shard-*.lmdb")) or any(store.glob("*/.shard-*.tmp-*"))
        if not shards and not (store / BUILD_LOCK_FILE).exists():
            raise StoreError(
                f"{store} is not a vhr store (it has no {INDEX_FILE} and no shards); "
                f"build one with `vhrdata build-lmdb RECORDS --out {store}`"
            )
        hint = "the build has not finished (run the same `vhrdata build-lmdb` again to resume)"
        if shards:
            hint += ", or assemble fanned-out shards with `vhrdata build-lmdb ... --assemble-only`"
        raise StoreError(f"{store} has no {INDEX_FILE}: {hint}")
    index = read_json(path)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise StoreError(f"{path} is not a vhr store index (format {index.get('format') if isinstance(index, dict) else None!r})")
    version = index.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{store} has store schema version {version}, this vhr reads version {SCHEMA_VERSION}; "
            "rebuild it with `vhrdata build-lmdb --overwrite`"
        )
    return index


# ---------------------------------------------------------------------------- LMDB environments

# py-lmdb refuses to open the same environment twice in one process, and an environment must
# not be used across fork(); so every read-only environment is opened once per process here.
_ENVS: dict[tuple, lmdb.Environment] = {}
_ENVS_PID = os.getpid()
_ENVS_LOCK = threading.Lock()


def _env_key(path: Path) -> tuple:
    st = os.stat(path / "data.mdb")
    return (str(path.resolve()), st.st_dev, st.st_ino)


def open_env(path: str | Path, *, readahead: bool = False) -> lmdb.Environment:
    """Open a shard read-only without locking (shards are immutable once renamed into place).

    Readahead is off by default: batches read records in random order, and the kernel's
    readahead would pull in pages nobody asked for.
    """
    with _ENVS_LOCK:
        return _open_env_locked(Path(path), readahead)


LMDB_MAGIC = 0xBEEFC0DE
# Offsets in an LMDB meta page (64-bit build): page header 16 bytes, then MDB_meta.
_META_MAGIC, _META_PSIZE, _META_MAIN_ROOT, _META_LAST_PG, _META_TXNID = 16, 40, 128, 136, 144
DATA_FILE = "data.mdb"


def lmdb_required_bytes(data_path: str | Path) -> tuple[int, int]:
    """(bytes the LMDB header says the file needs, actual file size) of a data.mdb.

    Reads the two meta pages with plain reads (no mapping), takes the newer valid one, and
    returns (last page number + 1) × page size. Raises ValueError for a damaged header.
    """
    fd = os.open(data_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        first = os.pread(fd, 4096, 0)
        if len(first) < 152:
            raise ValueError(f"data.mdb is {size} bytes, too short to hold an LMDB header")
        psize = struct.unpack_from("<I", first, _META_PSIZE)[0]
        if psize < 512 or psize > 65536 or psize & (psize - 1):
            raise ValueError(f"the LMDB header names a page size of {psize} bytes")
        metas = []
        for pg in (0, 1):
            page = first if pg == 0 else os.pread(fd, 152, psize)
            if len(page) < 152:
                continue
            magic, version = struct.unpack_from("<II", page, _META_MAGIC)
            if magic != LMDB_MAGIC or version != 1:
                continue
            root, last, txnid = struct.unpack_from("<QQQ", page, _META_MAIN_ROOT)
            metas.append((txnid, last, root))
        if not metas:
            raise ValueError("neither LMDB meta page is valid (no magic number)")
        for txnid, last, root in metas:
            if last < 1 or last > (1 << 40) or (root != 0xFFFFFFFFFFFFFFFF and not 2 <= root <= last):
                raise ValueError(f"an LMDB meta page is damaged (last page {last}, root page {root})")
        _, last, _ = max(metas)
        return (last + 1) * psize, size
    finally:
        os.close(fd)


def check_shard_file(shard_dir: str | Path, expected_bytes: int | None = None) -> None:
    """Refuse a shard whose data.mdb is shorter than its LMDB header (or shard.json) says.

    Mapping a truncated file and reading past its end kills the process with SIGBUS; this
    check runs before any shard is mapped. Raises StoreError naming the shard and the fix.
    """
    shard_dir = Path(shard_dir)
    data = shard_dir / DATA_FILE
    where = f"shard {shard_dir}"
    try:
        need, size = lmdb_required_bytes(data)
    except FileNotFoundError:
        raise StoreError(f"{where} is missing its {DATA_FILE}; {rebuild_hint(shard_dir)}") from None
    except ValueError as ex:
        raise StoreError(f"{where}: {DATA_FILE} has a damaged header ({ex}); {rebuild_hint(shard_dir)}") from None
    except OSError as ex:
        raise StoreError(f"{where}: cannot read {DATA_FILE} ({ex.strerror or ex})") from None
    if size < need:
        raise StoreError(
            f"{where}: {DATA_FILE} is truncated ({size:,} bytes, its LMDB header needs {need:,}; "
            f"a broken copy?); {rebuild_hint(shard_dir)}"
        )
    if expected_bytes is not None and size != expected_bytes:
        raise StoreError(
            f"{where}: {DATA_FILE} is {size:,} bytes, {SHARD_META_FILE} says {expected_bytes:,} "
            f"(truncated or replaced); {rebuild_hint(shard_dir)}"
        )


def _expected_data_bytes(shard_dir: Path) -> int | None:
    try:
        with open(shard_dir / SHARD_META_FILE, encoding="utf-8") as f:
            value = json.load(f).get("data_bytes")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _open_env_locked(path: Path, readahead: bool) -> lmdb.Environment:
    global _ENVS_PID
    if os.getpid() != _ENVS_PID:
        # Inherited from the parent through fork: drop our copies and open afresh.
        for env in _ENVS.values():
            try:
                env.close()
            except Exception:
                pass
        _ENVS.clear()
        _ENVS_PID = os.getpid()
    try:
        key = _env_key(path)
    except FileNotFoundError:
        raise StoreError(f"shard {path} is missing its data.mdb") from None
    env = _ENVS.get(key)
    if env is None:
        check_shard_file(path, _expected_data_bytes(path))
        try:
            env = lmdb.open(
                str(path), readonly=True, lock=False, readahead=readahead, subdir=True, create=False, max_readers=2048
            )
        except lmdb.Error as ex:
            raise StoreError(f"shard {path} cannot be opened: {ex}") from None
        _ENVS[key] = env
    return env


def forget_env(path: str | Path) -> None:
    """Close this process's environment of `path`, if open (before deleting or replacing a shard)."""
    path = Path(path)
    with _ENVS_LOCK:
        _forget_locked(path)


def _forget_locked(path: Path) -> None:
    for key in [k for k in _ENVS if k[0] == str(path.resolve())]:
        try:
            _ENVS.pop(key).close()
        except Exception:
            pass


def load_widths(shard_dir: Path, count: int) -> np.ndarray:
    try:
        widths = np.load(shard_dir / WIDTHS_FILE, allow_pickle=False)
    except (OSError, ValueError) as ex:
        raise StoreError(f"shard {shard_dir} has an unreadable {WIDTHS_FILE}: {ex}") from None
    if widths.shape != (count,):
        raise StoreError(f"shard {shard_dir}: {WIDTHS_FILE} has {widths.shape[0]} entries, the shard {count} records")
    return widths.astype(np.int32, copy=False)
