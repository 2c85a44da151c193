"""Store statistics: widths after preprocessing, padding wasted per batch, CTC feasibility per split.

A store's report is the records report of the lines the store holds (taken from the records folder
it was built from when that folder is still there and unchanged, else from the store itself),
plus the store-only sections. Padding is measured on the store's own batch plans, so the numbers
are what `SplitDataset.batches` will pad.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from vhrdata.errors import RecordsError
from vhrdata.quarantine import Reason, read_quarantine
from vhrdata.records import read_records, read_records_meta, records_fingerprint
from vhrdata.stats.compute import _distribution, quarantine_summary, records_stats, thumbnail_png

logger = logging.getLogger(__name__)


def looks_like_store(path: str | Path) -> bool:
    """True when `path` holds a store index (`open_store` checks the rest)."""
    try:
        from vhrdata.store import is_store
    except ImportError:  # the store stage is not part of this checkout
        return False
    return bool(is_store(path))


def padding_fraction(widths: np.ndarray, plan: Sequence[np.ndarray]) -> float:
    """Share of batch pixels that are padding when each batch of `plan` is padded to its widest image.

    Args:
        widths: width of every record of a split.
        plan: record indices of each batch (e.g. `SplitDataset.batch_plan(...)`).
    """
    widths = np.asarray(widths, dtype=np.float64)
    used = padded = 0.0
    for idx in plan:
        if len(idx) == 0:
            continue
        w = widths[np.asarray(idx)]
        used += float(w.sum())
        padded += float(w.max()) * len(w)
    return 0.0 if padded == 0 else 1.0 - used / padded


def store_stats(
    path: str | Path,
    *,
    batch_sizes: tuple[int, ...] = (8, 32, 128),
    samples_per_split: int = 4,
    min_train_count: int = 5,
    thumbnail_width: int = 800,
    seed: int = 0,
    callback=None,
):
    """Statistics of a store: see `vhrdata.stats.compute_stats`."""
    from vhrdata.ctc import ctc_frames_needed, frames_for_width
    from vhrdata.store import open_store
    from vhrdata.store.disk_format import SHARD_META_FILE, read_json

    store = open_store(path)
    downsample = int(store.index.get("build", {}).get("downsample") or 1)

    stored_rows: list[dict[str, Any]] = []
    position: dict[str, tuple[str, int]] = {}
    for split in store.splits:
        ds = store.split(split)
        for i, sample in enumerate(ds):
            stored_rows.append({"id": sample.id, "text": sample.text, "writer": sample.writer, "split": split,
                                "stored_width": int(ds.widths[i])})
            position[sample.id] = (split, i)
    stored = pd.DataFrame(stored_rows, columns=["id", "text", "writer", "split", "stored_width"])

    df, records_dir, records_meta, records_note = _records_for(store, stored)

    def decode(rec: dict) -> bytes:
        split, i = position[rec["id"]]
        return thumbnail_png(store.split(split)[i].image, thumbnail_width)

    report = records_stats(
        df, directory=records_dir, records_meta=records_meta, samples_per_split=samples_per_split,
        min_train_count=min_train_count, thumbnail_width=thumbnail_width, seed=seed, callback=callback,
        decode_thumbnail=decode,
    )
    data = report.data
    data["input"] = {"path": str(Path(path).resolve()), "kind": "store",
                     "records": str(records_dir) if records_dir else None, "records_note": records_note}

    # Quarantine: what ingest refused plus what the store build refused.
    ingest_items = read_quarantine(records_dir) if records_dir else []
    store_items = read_quarantine(store.path)
    data["quarantine"] = quarantine_summary(ingest_items + store_items)
    data["quarantine"]["by_stage"] = {"ingest": len(ingest_items), "store": len(store_items)}

    # Per-split refusals live in each shard's own metadata.
    refused: dict[str, Counter] = {}
    for split in store.splits:
        c: Counter = Counter()
        for entry in store.index["splits"][split]["shards"]:
            meta = read_json(store.path / entry["path"] / SHARD_META_FILE)
            c.update(str(q.get("reason")) for q in meta.get("quarantined", []))
        refused[split] = c

    widths = {s: store.split(s).widths for s in store.splits}
    all_widths = np.concatenate([widths[s] for s in store.splits]) if store.splits else np.zeros(0)
    groups, start = {"all": np.arange(all_widths.size)}, 0
    for s in store.splits:
        groups[s] = np.arange(start, start + widths[s].size)
        start += widths[s].size

    padding: dict[str, dict[str, dict[str, float]]] = {}
    for s in store.splits:
        ds = store.split(s)
        padding[s] = {}
        for bs in batch_sizes:
            padding[s][str(bs)] = {
                "shuffled": round(padding_fraction(ds.widths, ds.batch_plan(bs, seed=seed, bucket_window=0)), 4),
                "bucketed": round(padding_fraction(ds.widths, ds.batch_plan(bs, seed=seed)), 4),
            }

    ctc_by_split: dict[str, dict[str, Any]] = {}
    for s in store.splits:
        part = stored[stored["split"] == s]
        frames = frames_for_width(part["stored_width"].to_numpy(), downsample)
        needed = np.fromiter((ctc_frames_needed(t) for t in part["text"]), dtype=np.int64, count=len(part))
        slack = frames - needed
        info = store.index["splits"][s]
        ctc_by_split[s] = {
            "lines": int(info.get("in", len(part))),
            "feasible": int(len(part)),
            "infeasible": int(refused[s].get(Reason.CTC_INFEASIBLE.value, 0)),
            "min_slack": int(slack.min()) if slack.size else None,
            "p5_slack": int(np.percentile(slack, 5)) if slack.size else None,
            "median_frames_per_needed": round(float(np.median(frames / np.maximum(needed, 1))), 2)
            if slack.size else None,
        }
    ctc_examples = [
        {"id": q.get("id"), "message": q.get("message")}
        for q in store_items if q.get("reason") == Reason.CTC_INFEASIBLE.value
    ][:5]

    settings = store.settings
    data["store"] = {
        "path": str(store.path.resolve()),
        "settings": settings.to_dict(),
        "settings_hash": store.index.get("settings_hash"),
        "height": settings.height,
        "max_width": settings.max_width,
        "downsample": downsample,
        "counts": {
            s: {k: store.index["splits"][s].get(k) for k in ("in", "count", "quarantined", "capped")}
            | {"by_reason": dict(refused[s])}
            for s in store.splits
        },
        "widths": _distribution(all_widths, groups, integer=True),
        "padding": {
            "note": f"store batch plans with seed {seed}: shuffled = no bucketing, width-bucketed = the "
                    "default bucket window",
            "by_split": padding,
        },
        "ctc": {
            "downsample": downsample,
            "note": f"A line is CTC-feasible when its preprocessed width / {downsample} (the model's downsampling) "
                    "gives at least as many frames as its label needs (one per character plus a blank between "
                    "equal neighbours); slack = frames - needed. Infeasible lines were quarantined by the build.",
            "by_split": ctc_by_split,
            "examples": ctc_examples,
        },
    }
    return report


def _records_for(store, stored: pd.DataFrame) -> tuple[pd.DataFrame, Path | None, dict | None, str]:
    """The records of the stored lines, from the store's records folder when it is there and unchanged."""
    records = store.index.get("build", {}).get("records")
    fingerprint = store.index.get("build", {}).get("records_fingerprint")
    if records:
        try:
            df = read_records(records)
            meta = read_records_meta(records)
        except (RecordsError, OSError) as ex:
            note = f"records folder {records} unreadable ({ex}); figures come from the store alone"
        else:
            if "split" in df.columns and records_fingerprint(df) == fingerprint:
                df = df[df["id"].isin(set(stored["id"]))].reset_index(drop=True)
                return df, Path(records), meta, f"stored lines, described from {records}"
            note = f"records in {records} changed since the store was built; figures come from the store alone"
    else:
        note = "the store was built from a records frame, not a folder; figures come from the store alone"
    logger.warning("%s", note)
    df = stored.rename(columns={"stored_width": "width"}).assign(
        height=store.settings.height, source="store", path=None
    )
    return df, None, None, note + " (image sizes are after preprocessing)"
