"""Compute the dataset statistics report (the data behind report.json, .md and .html).

The core, `records_stats`, works on a records frame; `compute_stats` finds the frame and the
files around it (ingest.json, quarantine.jsonl, split.json) for a records folder or a store.
Image sizes come from the records' width/height columns: only the sample thumbnails are decoded.
"""

from __future__ import annotations

import io
import json
import logging
import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from vhrdata import __version__
from vhrdata.errors import RecordsError
from vhrdata.quarantine import read_quarantine
from vhrdata.records import SPLITS
from vhrdata.stats.vietnamese import (
    tone_counts,
    tone_placement_styles,
    vowel_diacritic_counts,
)

logger = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1
ALL = "all"
NO_WRITER = "(none)"
MAX_BINS = 30

# callback(done, total): progress, as the CLI's LazyProgress expects.
Callback = Callable[[int, int], None]


@dataclass
class DatasetReport:
    """A computed report: `data` is what report.json holds; `thumbnails` maps file name → PNG bytes."""

    data: dict[str, Any]
    thumbnails: dict[str, bytes] = field(default_factory=dict)


def records_stats(
    df: pd.DataFrame,
    *,
    directory: str | Path | None = None,
    records_meta: dict | None = None,
    samples_per_split: int = 4,
    min_train_count: int = 5,
    thumbnail_width: int = 800,
    seed: int = 0,
    callback: Callback | None = None,
    decode_thumbnail: Callable[[dict], bytes | None] | None = None,
) -> DatasetReport:
    """Statistics of a records frame; `directory` (the ingest/split output) adds quarantine and split files.

    Args:
        df: records (see docs/DESIGN.md); a `split` column groups everything per split.
        directory: folder holding ingest.json, quarantine.jsonl and split.json, if any.
        records_meta: the metadata stored in records.parquet.
        decode_thumbnail: makes a sample's PNG thumbnail from its record (default: read `path`).
        Other arguments: see `compute_stats`.
    """
    missing = [c for c in ("id", "text", "width", "height") if c not in df.columns]
    if missing:
        raise RecordsError(f"records are missing columns {missing}")
    stages = ["counts", "sizes", "characters", "vietnamese", "coverage", "quarantine", "leakage", "samples"]
    step = _Stepper(stages, callback)
    df = df.reset_index(drop=True)
    groups = _groups(df)
    data: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_by": f"vhrdata {__version__}",
        "splits": [g for g in groups if g != ALL],
    }

    data["counts"] = _counts(df, groups)
    step("counts")

    texts = df["text"].astype(str)
    data["label_lengths"] = {
        "chars": _distribution(texts.str.len().to_numpy(), groups, integer=True),
        "words": _distribution(texts.str.split().str.len().fillna(0).to_numpy(), groups, integer=True),
    }
    widths = df["width"].to_numpy(dtype=np.float64)
    heights = df["height"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(heights > 0, widths / heights, np.nan)
    data["image_sizes"] = {
        "width": _distribution(widths, groups, integer=True),
        "height": _distribution(heights, groups, integer=True),
        "aspect": _distribution(aspect, groups, integer=False),
    }
    step("sizes")

    per_group_chars = {g: Counter("".join(texts[idx])) for g, idx in groups.items()}
    data["characters"] = _character_table(per_group_chars)
    step("characters")

    data["vietnamese"] = {
        "tone_unit": "syllable",
        "tones": {g: tone_counts(texts[idx]) for g, idx in groups.items()},
        "vowel_diacritics": {g: vowel_diacritic_counts(texts[idx]) for g, idx in groups.items()},
        "tone_placement": tone_placement_styles(
            (df["raw_text"] if "raw_text" in df.columns else texts).astype(str)
        ),
        "tone_placement_source": "raw_text" if "raw_text" in df.columns else "text",
    }
    step("vietnamese")

    data["coverage"] = _coverage(df, groups, per_group_chars, min_train_count)
    step("coverage")

    directory = Path(directory) if directory is not None else None
    data["ingest"] = _read_json(directory / "ingest.json") if directory else None
    data["quarantine"] = quarantine_summary(read_quarantine(directory) if directory else [])
    step("quarantine")

    data["split"], data["leakage"] = _split_and_leakage(df, directory)
    if records_meta:
        data["records_meta"] = {k: v for k, v in records_meta.items() if k != "schema_version"}
    step("leakage")

    data["samples"], thumbnails = _samples(
        df, groups, samples_per_split, seed, thumbnail_width, decode_thumbnail
    )
    step("samples")
    return DatasetReport(data=data, thumbnails=thumbnails)


class _Stepper:
    def __init__(self, stages: list[str], callback: Callback | None):
        self.stages, self.callback, self.done = stages, callback, 0

    def __call__(self, stage: str) -> None:
        self.done += 1
        logger.debug("stats: %s done", stage)
        if self.callback is not None:
            self.callback(self.done, len(self.stages))


def _groups(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of all records and of each split (train, val, test first)."""
    groups = {ALL: np.arange(len(df))}
    if "split" in df.columns:
        names = [s for s in SPLITS if (df["split"] == s).any()]
        names += sorted(set(df["split"].dropna().astype(str)) - set(SPLITS))
        for s in names:
            groups[s] = np.flatnonzero((df["split"] == s).to_numpy())
    return groups


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """n, min, percentiles, mean and max of `values` (NaN ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "min": None, "p5": None, "median": None, "mean": None, "p95": None, "max": None}
    p5, med, p95 = np.percentile(v, [5, 50, 95])
    return {
        "n": int(v.size),
        "min": _num(v.min()),
        "p5": _num(p5),
        "median": _num(med),
        "mean": round(float(v.mean()), 3),
        "p95": _num(p95),
        "max": _num(v.max()),
    }


def _num(x: float) -> float | int:
    x = float(x)
    return int(x) if x.is_integer() else round(x, 3)


def histogram_edges(values: np.ndarray, *, integer: bool, max_bins: int = MAX_BINS) -> list[float]:
    """Shared bin edges for all splits; integer data gets whole-number-wide bins."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [0.0, 1.0]
    lo, hi = float(v.min()), float(v.max())
    if integer:
        width = max(1, math.ceil((hi - lo + 1) / max_bins))
        n = math.ceil((hi - lo + 1) / width)
        return [lo + i * width for i in range(n + 1)]
    if hi == lo:
        return [lo - 0.5, hi + 0.5]
    edges = [round(x, 4) for x in np.linspace(lo, hi, max_bins + 1)]
    # Rounding must not push the extremes out of the outer bins (np.histogram drops values outside).
    edges[0], edges[-1] = math.floor(lo * 1e4) / 1e4, math.ceil(hi * 1e4) / 1e4
    return edges


def _distribution(values: np.ndarray, groups: dict[str, np.ndarray], *, integer: bool) -> dict:
    values = np.asarray(values, dtype=np.float64)
    edges = histogram_edges(values, integer=integer)
    out = {"edges": edges, "summary": {}, "counts": {}}
    for g, idx in groups.items():
        v = values[idx]
        v = v[np.isfinite(v)]
        out["summary"][g] = summarize(v)
        out["counts"][g] = np.histogram(v, bins=edges)[0].astype(int).tolist()
    return out


def _counts(df: pd.DataFrame, groups: dict[str, np.ndarray]) -> dict:
    out: dict[str, Any] = {
        "total": int(len(df)),
        "by_split": {g: int(len(idx)) for g, idx in groups.items() if g != ALL},
    }
    source = df["source"].fillna("?").astype(str) if "source" in df.columns else pd.Series(["?"] * len(df))
    out["by_source"] = {str(k): int(v) for k, v in source.value_counts().sort_index().items()}
    out["by_source_split"] = {
        s: {g: int((source.iloc[idx] == s).sum()) for g, idx in groups.items() if g != ALL}
        for s in out["by_source"]
    }
    if "writer" in df.columns:
        writer = df["writer"]
        known = writer.dropna().astype(str)
        per_writer = known.value_counts()
        out["writers"] = int(per_writer.size)
        out["lines_without_writer"] = int(writer.isna().sum())
        out["writers_per_split"] = {
            g: int(writer.iloc[idx].dropna().nunique()) for g, idx in groups.items() if g != ALL
        }
        out["by_writer"] = {str(k): int(v) for k, v in per_writer.items()}
        lines = per_writer.to_numpy(dtype=np.float64)
        out["lines_per_writer"] = {
            "summary": summarize(lines),
            "edges": histogram_edges(lines, integer=True),
        }
        out["lines_per_writer"]["counts"] = np.histogram(lines, bins=out["lines_per_writer"]["edges"])[0].tolist()
    else:
        out["writers"] = 0
        out["lines_without_writer"] = int(len(df))
    return out


def char_label(ch: str) -> str:
    """How a character is shown in tables: visible stand-ins for space and invisible characters."""
    if ch == " ":
        return "␣"
    if unicodedata.category(ch)[0] in "CZ":
        return f"U+{ord(ch):04X}"
    return ch


def _character_table(per_group: dict[str, Counter]) -> dict:
    total = per_group[ALL]
    rows = []
    for ch, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append(
            {
                "char": ch,
                "label": char_label(ch),
                "codepoint": f"U+{ord(ch):04X}",
                "name": unicodedata.name(ch, ""),
                "count": int(n),
                "by_split": {g: int(c.get(ch, 0)) for g, c in per_group.items() if g != ALL},
            }
        )
    return {"distinct": len(total), "total": int(sum(total.values())), "table": rows}


def _coverage(df: pd.DataFrame, groups: dict, per_group: dict[str, Counter], min_train_count: int) -> dict:
    out: dict[str, Any] = {"min_train_count": min_train_count, "chars": []}
    if "train" not in groups:
        out["note"] = "no train split: run `vhrdata split` to see which val/test characters train lacks"
        return out
    train = per_group["train"]
    eval_splits = [g for g in groups if g not in (ALL, "train")]
    texts = df["text"].astype(str)
    gaps = sorted(
        {ch for g in eval_splits for ch in per_group[g] if train.get(ch, 0) < min_train_count},
        key=lambda ch: (train.get(ch, 0), -sum(per_group[g].get(ch, 0) for g in eval_splits), ch),
    )
    for ch in gaps:
        examples = []
        for g in eval_splits:
            for i in groups[g]:
                if ch in texts.iat[i]:
                    examples.append({"split": g, "id": str(df["id"].iat[i]), "text": texts.iat[i]})
                    if len(examples) >= 3:
                        break
            if len(examples) >= 3:
                break
        out["chars"].append(
            {
                "char": ch,
                "label": char_label(ch),
                "codepoint": f"U+{ord(ch):04X}",
                "train": int(train.get(ch, 0)),
                **{g: int(per_group[g].get(ch, 0)) for g in eval_splits},
                "examples": examples,
            }
        )
    out["never_in_train"] = sum(1 for c in out["chars"] if c["train"] == 0)
    out["rare_in_train"] = len(out["chars"]) - out["never_in_train"]
    affected = set()
    gap_set = set(gaps)
    for g in eval_splits:
        for i in groups[g]:
            if gap_set.intersection(texts.iat[i]):
                affected.add(i)
    out["eval_lines_affected"] = len(affected)
    return out


def quarantine_summary(items: list[dict], *, max_examples: int = 3) -> dict:
    """Count quarantined items by reason, with a few examples of each."""
    by_reason: Counter = Counter(str(it.get("reason")) for it in items)
    examples: dict[str, list[dict]] = {}
    for it in items:
        r = str(it.get("reason"))
        ex = examples.setdefault(r, [])
        if len(ex) < max_examples:
            ex.append({k: it.get(k) for k in ("id", "message", "origin") if it.get(k) is not None})
    return {
        "total": len(items),
        "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "examples": examples,
    }


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as ex:
        logger.warning("cannot read %s: %s", path, ex)
        return None


def _split_and_leakage(df: pd.DataFrame, directory: Path | None) -> tuple[dict | None, dict | None]:
    """split.json without its leakage part, and the leakage report (split.json's, else recomputed)."""
    split = _read_json(directory / "split.json") if directory else None
    leakage = None
    if split is not None:
        split = dict(split)
        leakage = split.pop("leakage", None)
    if leakage is None and {"split", "writer", "sha1", "text"} <= set(df.columns):
        try:
            from vhrdata.split import check_leakage
        except ImportError:  # split stage not installed in this checkout
            check_leakage = None
        if check_leakage is not None:
            leakage = check_leakage(df)
    return split, leakage


def _samples(
    df: pd.DataFrame,
    groups: dict[str, np.ndarray],
    per_split: int,
    seed: int,
    thumbnail_width: int,
    decode: Callable[[dict], bytes | None] | None,
) -> tuple[dict, dict[str, bytes]]:
    decode = decode or (lambda rec: thumbnail_png(rec.get("path"), thumbnail_width))
    names = [g for g in groups if g != ALL] or [ALL]
    rng = np.random.default_rng(seed)
    samples: dict[str, list] = {}
    thumbs: dict[str, bytes] = {}
    for g in names:
        idx = groups[g]
        chosen = np.sort(rng.choice(idx, size=min(per_split, len(idx)), replace=False)) if len(idx) else []
        samples[g] = []
        for i in chosen:
            rec = df.iloc[int(i)].to_dict()
            entry = {"id": str(rec["id"]), "text": str(rec["text"]), "width": int(rec["width"]),
                     "height": int(rec["height"]), "thumbnail": None}
            try:
                png = decode(rec)
            except Exception as ex:  # a sample we cannot show is not worth failing the report
                logger.warning("no thumbnail for %s: %s", rec["id"], ex)
                png = None
            if png:
                name = f"{g}_{len(samples[g])}.png"
                thumbs[name] = png
                entry["thumbnail"] = name
            samples[g].append(entry)
    return samples, thumbs


def thumbnail_png(image: Any, max_width: int = 800) -> bytes:
    """A grayscale PNG thumbnail no wider than `max_width` of an image path, bytes or uint8 array."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        img = Image.fromarray(image)
    elif isinstance(image, (bytes, bytearray)):
        img = Image.open(io.BytesIO(image))
    else:
        if image is None:
            raise ValueError("record has no image path")
        img = Image.open(image)
    img = img.convert("L")
    if img.width > max_width:
        img = img.resize((max_width, max(1, round(img.height * max_width / img.width))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
