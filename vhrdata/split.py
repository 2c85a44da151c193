"""Writer-disjoint train/val/test split and the leakage check.

Each group (a writer, or an image when the dataset has no writer ids) gets a number u in [0, 1) from a hash
of its id and the seed. Two methods place groups into splits:

- "stable" (default): fixed cut points at the cumulative ratios (0.8, 0.9 for 0.8/0.1/0.1). A group's split
  depends only on its id and the seed, so adding writers later never moves the existing ones. The line
  ratios are then met on average; with few writers they may be off (4 writers can give 50/25/25 for
  80/10/10), and the result then carries a warning that names "balanced" with the shares it would give.
  A requested split may even come out empty; in that one case the groups nearest to that split's interval
  are moved into it, and the result says so.
- "balanced": groups are ordered by u and the cut points are placed so that the line counts match the
  ratios as closely as writer granularity allows. Adding writers can move writers that sit next to a cut.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vhrdata.errors import SplitError
from vhrdata.locks import release_lock
from vhrdata.records import (
    RECORDS_FILE,
    SPLITS,
    finish_interrupted_commit,
    lock_records_folder,
    read_records,
    read_records_meta,
    write_error,
    write_records,
)

SPLIT_FILE = "split.json"
METHODS = ("stable", "balanced")
GROUPS = ("writer", "image")


def parse_ratios(value: str | tuple | list) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' (or a sequence) → three non-negative ratios summing to 1.

    Train must be above 0, except for '0,0,1': an evaluation-only set (every line in test), such as
    the camera copies of `vhrdata degrade` or a held-out synthetic set.
    """
    try:
        parts = [float(x) for x in (value.split(",") if isinstance(value, str) else value)]
    except ValueError:
        raise SplitError(f"ratios must be three numbers like 0.8,0.1,0.1. Received: {value!r}") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or not abs(sum(parts) - 1) < 1e-6 or (
        parts[0] <= 0 and parts != [0.0, 0.0, 1.0]
    ):
        raise SplitError(
            f"ratios must be three non-negative numbers for train,val,test that sum to 1, with train > 0 "
            f"(or 0,0,1 for an evaluation-only set). Received: {value!r}"
        )
    return tuple(parts)  # type: ignore[return-value]


def group_hash(group_id: str, seed: int) -> float:
    """A number in [0, 1) that depends only on the group id and the seed."""
    digest = hashlib.sha256(f"{seed}\x1f{group_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class SplitResult:
    """The assignment and what it achieved."""

    splits: pd.Series  # per record
    group: str  # what was grouped: writer, image, or writer+image
    method: str
    requested: tuple[float, float, float]
    achieved: dict[str, float]
    lines: dict[str, int]
    groups: dict[str, int]
    writer_disjoint: bool
    notes: list[str]
    warnings: list[str] = field(default_factory=list)  # the split is usable but not what was asked


def group_keys(df: pd.DataFrame, group: str = "writer") -> tuple[pd.Series, str, list[str]]:
    """The grouping key of each record, what it means, and notes for the user."""
    if group not in GROUPS:
        raise SplitError(f"group must be one of {GROUPS}. Received: {group!r}")
    image_key = "image:" + df["sha1"].astype(str)
    if group == "image":
        return image_key, "image", ["grouped by image (--group image): the split is NOT writer-disjoint"]
    has_writer = df["writer"].notna() & (df["writer"].astype(str) != "")
    if not has_writer.any():
        return image_key, "image", [
            "the records have no writer ids, so lines are grouped by image: "
            "the split is therefore NOT writer-disjoint"
        ]
    keys = ("writer:" + df["writer"].astype(str)).where(has_writer, image_key)
    notes = []
    if not has_writer.all():
        notes.append(f"{int((~has_writer).sum())} lines have no writer id and were grouped by image")
        return keys, "writer+image", notes
    return keys, "writer", notes


# Under --method stable, a split whose line share is off by more than this (absolute) gets a warning that
# names --method balanced, when balanced comes closer.
RATIO_WARN_TOLERANCE = 0.05


def split_groups(
    df: pd.DataFrame,
    ratios=(0.8, 0.1, 0.1),
    seed: int = 0,
    group: str = "writer",
    method: str = "stable",
) -> SplitResult:
    """Assign each record to train/val/test so that no group (a writer, or an image) spans two splits.

    Args:
        df: records (needs writer and sha1 columns).
        ratios: train, val, test shares of lines.
        seed: changes the assignment; the same seed gives the same assignment.
        group: "writer" (falls back to image where writers are unknown) or "image".
        method: "stable" or "balanced" (see the module docstring).
    """
    ratios = parse_ratios(ratios)
    if method not in METHODS:
        raise SplitError(f"method must be one of {METHODS}. Received: {method!r}")
    if len(df) == 0:
        raise SplitError("there are no records to split")
    keys, grouped_by, notes = group_keys(df, group)
    sizes = keys.value_counts()
    gids = sizes.index.to_numpy()
    u = np.array([group_hash(g, seed) for g in gids])
    cum = np.cumsum(ratios)
    counts = sizes.to_numpy()
    warnings: list[str] = []
    if method == "stable":
        idx = np.searchsorted(cum[:2], u, side="right")
        idx = _fill_empty_splits(idx, u, ratios, cum, notes)
        stable_off = _deviation(idx, counts, ratios)
        if stable_off > RATIO_WARN_TOLERANCE:
            unit = {"writer": "writer", "image": "image"}.get(grouped_by, "group")
            balanced = _balanced_indices(u, counts, cum)
            if _deviation(balanced, counts, ratios) < stable_off - 1e-9:
                warnings.append(
                    f"asked {_fmt_shares(ratios)} but --method stable gives {_fmt_shares(_shares(idx, counts))} "
                    f"with {len(gids)} {unit}s; --method balanced meets the asked ratios as closely as {unit} "
                    f"granularity allows "
                    f"(here {_fmt_shares(_shares(balanced, counts))}"
                    + _empty_note(balanced, counts, ratios) + ")"
                )
    else:
        idx = _balanced_indices(u, counts, cum)
    group_split = pd.Series(np.array(SPLITS)[idx], index=gids)
    splits = keys.map(group_split)
    lines = {s: int((splits == s).sum()) for s in SPLITS}
    n = len(df)
    achieved = {s: lines[s] / n for s in SPLITS}
    groups = {s: int((group_split == s).sum()) for s in SPLITS}
    return SplitResult(
        splits=splits, group=grouped_by, method=method, requested=ratios, achieved=achieved, lines=lines,
        groups=groups, writer_disjoint=grouped_by == "writer", notes=notes, warnings=warnings,
    )


def _balanced_indices(u: np.ndarray, counts: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Split index per group: groups ordered by hash, cut where the line counts meet the ratios."""
    order = np.argsort(u, kind="stable")
    ordered = counts[order]
    running = np.cumsum(ordered) - ordered / 2  # group midpoints in line units
    idx_sorted = np.searchsorted(cum[:2] * ordered.sum(), running, side="right")
    idx = np.empty_like(idx_sorted)
    idx[order] = idx_sorted
    return idx


def _shares(idx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.bincount(idx, weights=counts, minlength=3) / counts.sum()


def _deviation(idx: np.ndarray, counts: np.ndarray, ratios) -> float:
    return float(np.abs(_shares(idx, counts) - np.asarray(ratios)).max())


def _empty_note(idx: np.ndarray, counts: np.ndarray, ratios) -> str:
    shares = _shares(idx, counts)
    empty = [SPLITS[s] for s in range(3) if ratios[s] > 0 and shares[s] == 0]
    return f", which leaves {' and '.join(empty)} empty" if empty else ""


def _fmt_shares(shares) -> str:
    return "/".join(f"{100 * x:.0f}" for x in shares) + " %"


def _fill_empty_splits(idx, u, ratios, cum, notes):
    """Give every split with a positive ratio at least one group, when there are enough groups."""
    starts = np.concatenate([[0.0], cum[:2]])
    for s in range(3):
        if ratios[s] <= 0 or (idx == s).any():
            continue
        counts = np.bincount(idx, minlength=3)
        donors = np.flatnonzero(counts[idx] > 1)
        if donors.size == 0:
            notes.append(f"too few groups to give {SPLITS[s]} any lines")
            continue
        centre = starts[s] + ratios[s] / 2
        pick = donors[np.argmin(np.abs(u[donors] - centre))]
        notes.append(
            f"hashing left {SPLITS[s]} empty; moved the group nearest to its interval into it "
            "(with this few groups, adding groups may move it back)"
        )
        idx[pick] = s
    return idx


def check_leakage(df: pd.DataFrame, max_examples: int = 5) -> dict:
    """Look for writers, identical images and texts shared between splits.

    Returns a dict with `ok` (no writer or image leak), `writer_leaks`, `image_leaks` and `shared_texts`.
    Shared texts are reported, not failed: identical addresses are common in these datasets.
    """
    if "split" not in df.columns:
        raise SplitError("records have no split column; run `vhrdata split` first")
    report: dict = {}
    w = df[df["writer"].notna()]
    per_writer = w.groupby("writer")["split"].nunique()
    leaking = per_writer[per_writer > 1].index.tolist()
    report["writer_leaks"] = {
        "count": len(leaking),
        "examples": [
            {"writer": str(x), "splits": dict(Counter(w.loc[w["writer"] == x, "split"]))}
            for x in leaking[:max_examples]
        ],
    }
    per_hash = df.groupby("sha1")["split"].nunique()
    dup = per_hash[per_hash > 1].index.tolist()
    report["image_leaks"] = {
        "count": len(dup),
        "examples": [df.loc[df["sha1"] == h, "id"].tolist()[:4] for h in dup[:max_examples]],
    }
    per_text = df.groupby("text")["split"].agg(lambda s: sorted(set(s)))
    shared = per_text[per_text.map(len) > 1]
    report["shared_texts"] = {
        "count": int(len(shared)),
        "lines": int(df["text"].isin(shared.index).sum()),
        "examples": [{"text": t, "splits": s} for t, s in list(shared.items())[:max_examples]],
    }
    report["ok"] = report["writer_leaks"]["count"] == 0 and report["image_leaks"]["count"] == 0
    return report


def split_records(
    directory: str | Path,
    ratios=(0.8, 0.1, 0.1),
    seed: int = 0,
    group: str = "writer",
    method: str = "stable",
) -> tuple[SplitResult, dict]:
    """Split the records in an ingest folder in place, write split.json, and run the leakage check."""
    directory = Path(directory)
    finish_interrupted_commit(directory)
    lock = lock_records_folder(directory) if directory.is_dir() else None
    try:
        return _split_locked(directory, ratios, seed, group, method)
    finally:
        release_lock(lock)


def write_split_info(directory: Path, info: dict) -> None:
    """Write `info` as the folder's split.json, atomically (a temporary file renamed over it).

    Raises:
        OSError: it could not be written; the previous split.json stays and no temporary file is left.
    """
    tmp = directory / (SPLIT_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(directory / SPLIT_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _split_locked(directory: Path, ratios, seed: int, group: str, method: str) -> tuple[SplitResult, dict]:
    meta = read_records_meta(directory)
    df = read_records(directory)
    result = split_groups(df, ratios, seed, group, method)
    df["split"] = result.splits.to_numpy()
    leakage = check_leakage(df)
    info = {
        "ratios_requested": list(result.requested),
        "ratios_achieved": result.achieved,
        "lines": result.lines,
        "groups": result.groups,
        "seed": seed,
        "group": result.group,
        "method": result.method,
        "writer_disjoint": result.writer_disjoint,
        "notes": result.notes,
        "warnings": result.warnings,
        "leakage": leakage,
    }
    meta = {k: v for k, v in meta.items() if k != "schema_version"}
    what = RECORDS_FILE
    try:
        write_records(df, directory, meta={**meta, "split": {k: info[k] for k in ("seed", "group", "method")}})
        what = SPLIT_FILE
        write_split_info(directory, info)
    except OSError as ex:
        raise write_error(ex, directory, what, elsewhere="") from None
    return result, leakage
