"""Camera copies of a records split: the test-camera evaluation set.

`degrade_records(records, out)` reads the lines of one split of an ingested records folder, passes
each through `camera_degrade` with fixed ranges and a fixed seed (`TEST_CAMERA`, `TEST_CAMERA_SEED`
by default: other ranges and another seed than training augmentation), and writes a manifest
dataset that `vhrdata ingest OUT` reads:

    OUT/images/<n>.png     the degraded line (PNG, so the JPEG artefacts of the transform stay exact)
    OUT/manifest.csv       path,text,writer,id (paths relative to OUT; writer and id kept)
    OUT/degrade.json       what was done: source records, split, ranges, seed, counts

Line k's generator is seeded with (seed, k) in the order of the records' ids, so the copy depends
only on the records, the split, the ranges and the seed. A line that no longer decodes is counted
and skipped with its reason in degrade.json (ingest has checked them, so this means the source
changed since).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np

from vhrdata.errors import ImageDecodeError, OutputNotWritable, RecordsError
from vhrdata.images import decode_image
from vhrdata.records import read_records
from vhrdata.synth.camera import SYNTH_CAMERA, TEST_CAMERA, TEST_CAMERA_SEED, CameraRanges, camera_degrade

#: Named ranges for `--preset`.
CAMERA_PRESETS = {"test": TEST_CAMERA, "synth": SYNTH_CAMERA}

SCHEMA = 1


def degrade_records(
    records: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    ranges: CameraRanges = TEST_CAMERA,
    seed: int = TEST_CAMERA_SEED,
    overwrite: bool = False,
) -> dict:
    """Write camera-degraded copies of one split of `records` as a manifest dataset in `out`.

    Args:
        records: an ingested (and split) records folder.
        out: the output folder; must be empty or absent unless `overwrite`.
        split: which split to copy ("test", "val", "train" or "all").
        ranges: the camera effect ranges (`TEST_CAMERA` by default).
        seed: the base seed; line k uses `np.random.default_rng([seed, k])`.
        overwrite: replace an earlier degrade run's files in `out`.

    Returns:
        The summary written to degrade.json (`lines`, `skipped`, `split`, `seed`, ...).

    Raises:
        RecordsError: no such split or an empty selection.
        OutputNotWritable: a non-empty `out`, or a write that failed.
    """
    out = Path(out)
    df = read_records(records, require_split=split != "all")
    if split != "all":
        df = df[df["split"] == split]
    if df.empty:
        raise RecordsError(f"{records} has no lines in split {split!r}; split it first (vhrdata split {records})")
    if out.exists() and any(out.iterdir()) and not (overwrite and (out / "degrade.json").exists()):
        raise OutputNotWritable(f"{out} is not empty; choose an empty folder (or --overwrite an earlier degrade run)")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    df = df.sort_values("id", kind="stable")
    rows, skipped = [], []
    for k, rec in enumerate(df.itertuples(index=False)):
        try:
            gray = decode_image(rec.path)
        except ImageDecodeError as ex:
            skipped.append({"id": rec.id, "reason": str(ex)})
            continue
        degraded = camera_degrade(gray, np.random.default_rng([seed, k]), ranges)
        name = f"{k:05d}.png"
        if not cv2.imwrite(str(images / name), degraded):
            raise OutputNotWritable(f"cannot write {images / name}; check the free space and permissions of {out}")
        rows.append({"path": f"images/{name}", "text": rec.text, "writer": rec.writer if isinstance(rec.writer, str) else "", "id": rec.id})
    tmp = out / "manifest.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text", "writer", "id"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / "manifest.csv")
    summary = {
        "schema": SCHEMA, "records": str(records), "split": split, "seed": seed, "ranges": ranges.to_dict(),
        "lines": len(rows), "skipped": skipped,
    }
    (out / "degrade.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return summary
