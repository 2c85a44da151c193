"""Merge records folders into one: real lines with synthetic ones, or several datasets into one store.

Each input is a records folder that `vhrdata ingest` wrote (and, unless it is `train_only`, that
`vhrdata split` split). The output is an ordinary records folder, already split, that `build-lmdb`,
`stats` and `check-leakage` read like any other:

- every input keeps its own split, so a test split stays exactly the lines it was (a `train_only` input
  goes to train whole: synthetic lines that should teach, never be scored);
- ids and writers are prefixed with the input's name (`cinnamon/0001.png`, `synth/w003`): two datasets'
  `w001` are different people, and an id names one line;
- a later copy of a byte-identical image (sha1) is quarantined as `duplicate_image`, so the same line
  cannot sit in train through one input and in test through another;
- the inputs' quarantined items are carried over (reason and message unchanged, id prefixed), so
  records in = kept + quarantined still holds over the merged folder;
- ingest.json names every input with its ingest `run_id` and counts, and split.json gives the lines per
  split and the leakage check of the merged records.

The output is written like an ingest's (staged, then committed by renames), so a full disk or a kill
leaves the previous output as it was. A merge is a snapshot: re-ingesting an input later does not
change it; merge again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from vhrdata import __version__
from vhrdata.errors import RecordsError
from vhrdata.ingest import commit_output, open_output_folder, read_ingest_report
from vhrdata.locks import release_lock
from vhrdata.quarantine import QUARANTINE_FILE, QuarantineItem, Reason, read_quarantine
from vhrdata.records import (
    COLUMNS,
    SPLITS,
    finish_interrupted_commit,
    read_records,
    records_path,
    write_error,
)
from vhrdata.split import SPLIT_FILE, check_leakage, write_split_info


@dataclass(frozen=True)
class MergeInput:
    """One records folder to merge.

    Args:
        path: the records folder (or its records.parquet).
        train_only: put all its lines in train, whatever its split says (it need not be split).
        name: the prefix of its ids and writers (default: the folder's name).
    """

    path: Path
    train_only: bool = False
    name: str | None = None


@dataclass
class MergeResult:
    """Counts of one merge."""

    out: Path
    n_in: int
    kept: int
    quarantined: int
    by_reason: dict[str, int]
    lines: dict[str, int]
    info: dict

    def summary_line(self) -> str:
        return f"in {self.n_in} · kept {self.kept} · quarantined {self.quarantined}"


def input_names(inputs: Sequence[MergeInput]) -> list[str]:
    """The prefix of each input: its `name`, or its folder's name, made unique with `-2`, `-3`…"""
    names: list[str] = []
    for item in inputs:
        folder = records_path(item.path).parent
        base = item.name or folder.resolve().name or "records"
        if "/" in base:
            raise RecordsError(f"merge name {base!r} holds a '/'; choose a name without one")
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def merge_records(inputs: Sequence[MergeInput], out: str | Path) -> MergeResult:
    """Merge `inputs` into the records folder `out` (see the module docstring).

    Raises:
        RecordsError: an input is not a records folder, is not split (and not train_only), or is `out`.
        OutputNotWritable: `out` holds other files, or cannot be written (the previous output is kept).
    """
    started = time.time()
    if not inputs:
        raise RecordsError("nothing to merge: name at least one records folder")
    out = Path(out).expanduser()
    names = input_names(inputs)
    for item in inputs:
        if records_path(item.path).parent.resolve() == out.resolve():
            raise RecordsError(f"{out} is one of the inputs; merge into a new folder")
    frames, quarantined, described = [], [], []
    for item, name in zip(inputs, names):
        df, q, desc = _read_input(item, name)
        frames.append(df)
        quarantined.extend(q)
        described.append(desc)
    df = pd.concat(frames, ignore_index=True)
    dup = df["sha1"].duplicated(keep="first")
    first_of = df.drop_duplicates("sha1").set_index("sha1")["id"]
    for row in df[dup].itertuples(index=False):
        quarantined.append(QuarantineItem(
            reason=Reason.DUPLICATE_IMAGE.value, id=row.id, path=row.path, origin=row.origin,
            raw_text=row.raw_text, duplicate_of=first_of[row.sha1],
            message=f"the same image as {first_of[row.sha1]} (another input of this merge)"))
    df = df[~dup].reset_index(drop=True)
    n_in = sum(d["in"] for d in described)
    lines = {s: int((df["split"] == s).sum()) for s in SPLITS}
    report = {
        "schema_version": 1,
        "vhr_version": __version__,
        "src": "merge of " + ", ".join(str(d["path"]) for d in described),
        "layout": "merge",
        "inputs": described,
        "counts": {"in": n_in, "kept": len(df), "quarantined": len(quarantined)},
        "writers": int(df["writer"].dropna().nunique()),
        "lines_without_writer": int(df["writer"].isna().sum()),
    }
    lock = open_output_folder(out)
    try:
        finish_interrupted_commit(out)
        report["seconds"] = round(time.time() - started, 3)
        by_reason = commit_output(out, df, quarantined, report)
        leakage = check_leakage(df)
        split_info = {
            "method": "merge",
            "lines": lines,
            "ratios_achieved": {s: round(n / max(len(df), 1), 3) for s, n in lines.items()},
            "inputs": {d["name"]: d["lines"] for d in described},
            "notes": [f"{d['name']}: all lines in train (train_only)" for d in described if d["train_only"]],
            "warnings": [],
            "leakage": leakage,
        }
        try:
            write_split_info(out, split_info)
        except OSError as ex:
            raise write_error(ex, out, SPLIT_FILE) from None
    finally:
        release_lock(lock)
    return MergeResult(out=out, n_in=n_in, kept=len(df), quarantined=len(quarantined), by_reason=by_reason,
                       lines=lines, info={**report, "split": split_info})


def _read_input(item: MergeInput, name: str) -> tuple[pd.DataFrame, list[QuarantineItem], dict]:
    folder = records_path(item.path).parent
    df = read_records(folder)  # checks that it is one ingest's (or merge's) complete output
    if "split" not in df.columns or df["split"].isna().any():
        if not item.train_only:
            raise RecordsError(f"{folder} is not split; run `vhrdata split {folder}` first, or merge it "
                               "with --train-only to put all its lines in train")
    df = df.copy()
    if item.train_only:
        df["split"] = "train"
    bad = sorted(set(df["split"].astype(str)) - set(SPLITS))
    if bad:
        raise RecordsError(f"{folder} has split values {bad}; re-run `vhrdata split {folder}`")
    df["id"] = name + "/" + df["id"].astype(str)
    df["writer"] = df["writer"].map(lambda w: None if w is None or pd.isna(w) else f"{name}/{w}")
    df = df[COLUMNS + ["split"]]
    q_path = folder / QUARANTINE_FILE
    quarantined = []
    for d in (read_quarantine(q_path) if q_path.exists() else []):
        fields = {k: d.get(k) for k in ("reason", "message", "path", "origin", "raw_text")}
        fields["id"] = None if d.get("id") is None else f"{name}/{d['id']}"
        fields["duplicate_of"] = None if d.get("duplicate_of") is None else f"{name}/{d['duplicate_of']}"
        quarantined.append(QuarantineItem(**fields))
    report = read_ingest_report(folder)
    desc = {
        "name": name,
        "path": str(folder.resolve()),
        "run_id": report.get("run_id"),
        "src": report.get("src"),
        "train_only": item.train_only,
        "in": len(df) + len(quarantined),
        "kept": len(df),
        "quarantined": len(quarantined),
        "lines": {s: int((df["split"] == s).sum()) for s in SPLITS},
    }
    return df, quarantined, desc
