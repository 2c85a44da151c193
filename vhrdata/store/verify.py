"""Verify a store end to end: schema, settings hash, counts, every record's CRC32, every shard's hash."""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import lmdb
import numpy as np

from vhrdata.errors import StoreError
from vhrdata.preprocess import PreprocessSettings
from vhrdata.quarantine import read_quarantine
from vhrdata.store import disk_format
from vhrdata.store.disk_format import QUARANTINE_FILE, SHARD_META_FILE, WIDTHS_FILE, decode_record, record_key


@dataclass
class VerifyReport:
    """Outcome of `verify_store`.

    Attributes:
        store: the store folder.
        splits: records checked per split.
        shards: number of shards read.
        records: number of records read.
        image_bytes: image bytes read.
        faults: one line per fault, naming the shard and, for a record, its key.
    """

    store: Path
    splits: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    records: int = 0
    image_bytes: int = 0
    faults: list[str] = field(default_factory=list)
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.faults


def verify_store(
    path: str | Path,
    *,
    callback: Callable[[int, int], None] | None = None,
    max_faults_per_shard: int = 20,
) -> VerifyReport:
    """Read every record of every shard and check it against the index.

    Checks the schema version, the settings hash, the shard list, each shard's metadata,
    widths and content hash, the key sequence, every record's CRC32 and header, and that
    the counts reconcile (records in = stored + quarantined).

    Args:
        path: the store folder.
        callback: called as `callback(records_done, records_total)`.
        max_faults_per_shard: stop listing a shard's record faults after this many.

    Returns:
        A VerifyReport; `report.ok` is False when anything is wrong.

    Raises:
        StoreError: `path` is not a store at all (no index.json, foreign format, other schema).
    """
    path = Path(path)
    index = disk_format.read_index(path)
    report = VerifyReport(store=path, index=index)
    faults = report.faults
    try:
        settings = PreprocessSettings.from_dict(index["settings"])
        if settings.hash() != index.get("settings_hash"):
            faults.append("index.json: the settings do not match settings_hash")
    except (KeyError, TypeError, ValueError) as ex:
        faults.append(f"index.json: unreadable settings ({ex})")
        settings = None
    identity = index.get("build", {}).get("identity")
    if identity and settings is not None and identity.get("settings_hash") != settings.hash():
        faults.append("index.json: build identity names other settings than the index")
    height = settings.height if settings else None

    total = sum(info.get("count", 0) for info in index.get("splits", {}).values())
    done = 0
    if callback:
        callback(0, total)
    seen_reasons: Counter = Counter()
    for split, info in index.get("splits", {}).items():
        split_count = 0
        chars: set[str] = set()
        for entry in info.get("shards", []):
            rel = entry["path"]
            report.shards += 1
            try:
                n, shard_chars, reasons = _verify_shard(path, rel, entry, identity, height, faults, report,
                                                        max_faults_per_shard, callback, done, total)
            except Exception as ex:  # noqa: BLE001 - verify reports, it never crashes
                faults.append(f"shard {rel}: unreadable ({type(ex).__name__}: {ex})")
                n, shard_chars, reasons = 0, set(), Counter()
            split_count += n
            done += n
            chars |= shard_chars
            seen_reasons.update(reasons)
        report.splits[split] = split_count
        if split_count != info.get("count"):
            faults.append(f"split {split}: {split_count} records read, index.json says {info.get('count')}")
        if "".join(sorted(chars)) != info.get("alphabet"):
            faults.append(f"split {split}: the labels' characters differ from the alphabet in index.json")

    counts = index.get("counts", {})
    stored = sum(report.splits.values())
    if counts.get("stored") != stored:
        faults.append(f"index.json: counts.stored is {counts.get('stored')}, the shards hold {stored}")
    if counts.get("in") != counts.get("stored", 0) + counts.get("quarantined", 0):
        faults.append(
            f"index.json: counts do not reconcile (in {counts.get('in')} != stored {counts.get('stored')} "
            f"+ quarantined {counts.get('quarantined')})"
        )
    quarantined = read_quarantine(path / QUARANTINE_FILE)
    if len(quarantined) != counts.get("quarantined"):
        faults.append(f"{QUARANTINE_FILE}: {len(quarantined)} lines, index.json counts {counts.get('quarantined')}")
    if dict(Counter(q.get("reason") for q in quarantined)) != dict(seen_reasons) or dict(seen_reasons) != counts.get(
        "by_reason", {}
    ):
        faults.append(f"{QUARANTINE_FILE}: reasons differ between the file, the shards and index.json")
    return report


def _verify_shard(
    store: Path, rel: str, entry: dict, identity: dict | None, height: int | None, faults: list[str],
    report: VerifyReport, max_faults: int, callback, done_before: int, total: int,
) -> tuple[int, set[str], Counter]:
    shard_dir = store / rel
    chars: set[str] = set()
    reasons: Counter = Counter()
    if not (shard_dir / "data.mdb").exists():
        faults.append(f"shard {rel}: missing")
        return 0, chars, reasons
    meta_path = shard_dir / SHARD_META_FILE
    try:
        meta = disk_format.read_json(meta_path)
    except (OSError, StoreError) as ex:
        faults.append(f"shard {rel}: unreadable {SHARD_META_FILE} ({ex})")
        meta = {}
    for key in ("count", "sha256", "widths_sha256"):
        if meta.get(key) != entry.get(key):
            faults.append(f"shard {rel}: {SHARD_META_FILE} {key} {meta.get(key)!r} != index.json {entry.get(key)!r}")
    if meta.get("identity") != identity:
        faults.append(f"shard {rel}: built from other settings or records than the index says")
    reasons.update(q.get("reason") for q in meta.get("quarantined", []))
    count = entry.get("count", 0)
    try:
        widths = np.load(shard_dir / WIDTHS_FILE, allow_pickle=False)
        if hashlib.sha256(widths.astype(np.int32).tobytes()).hexdigest() != entry.get("widths_sha256"):
            faults.append(f"shard {rel}: {WIDTHS_FILE} does not match its hash")
    except (OSError, ValueError) as ex:
        faults.append(f"shard {rel}: unreadable {WIDTHS_FILE} ({ex})")
        widths = None

    sha = hashlib.sha256()
    n = 0
    shard_faults = 0
    last_key = None

    def fault(msg: str) -> None:
        nonlocal shard_faults
        shard_faults += 1
        if shard_faults <= max_faults:
            faults.append(msg)
        elif shard_faults == max_faults + 1:
            faults.append(f"shard {rel}: more faults not listed")

    try:
        env = disk_format.open_env(shard_dir)
        with env.begin(buffers=True) as txn:
            for key, value in txn.cursor():
                key = bytes(key)
                last_key = key
                expected = record_key(n)
                if key != expected:
                    fault(f"shard {rel} key {key.decode(errors='replace')}: unexpected key (expected {expected.decode()})")
                sha.update(key)
                sha.update(struct.pack("<Q", len(value)))
                sha.update(value)
                try:
                    rec = decode_record(value, check_crc=True)
                except ValueError as ex:
                    fault(f"shard {rel} key {key.decode(errors='replace')}: {ex}")
                else:
                    h, w = rec.image.shape
                    if height is not None and h != height:
                        fault(f"shard {rel} key {key.decode(errors='replace')}: image height {h}, the settings say {height}")
                    if widths is not None and (n >= len(widths) or widths[n] != w):
                        fault(f"shard {rel} key {key.decode(errors='replace')}: width {w} differs from {WIDTHS_FILE}")
                    chars.update(rec.text)
                    report.image_bytes += h * w
                n += 1
                if callback and n % 256 == 0:
                    callback(done_before + n, total)
    except lmdb.Error as ex:
        where = f" after key {last_key.decode(errors='replace')}" if last_key else ""
        faults.append(f"shard {rel}: LMDB error{where}: {ex}")
    except StoreError as ex:
        faults.append(f"shard {rel}: {ex}")
    except (UnicodeDecodeError, ValueError, struct.error) as ex:
        faults.append(f"shard {rel}: unreadable after key {last_key!r}: {ex}")
    report.records += n
    if n != count:
        faults.append(f"shard {rel}: {n} records, index.json says {count}")
    if sha.hexdigest() != entry.get("sha256"):
        faults.append(f"shard {rel}: content hash differs from index.json")
    if callback:
        callback(done_before + n, total)
    return n, chars, reasons
