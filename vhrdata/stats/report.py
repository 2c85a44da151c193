"""Entry point of the statistics report: say what a folder is, and compute its report.

`vhrdata.stats.compute` holds the records statistics and `vhrdata.stats.store` the store
statistics (built on them); this module is the one that knows both, so neither imports the other
back.
"""

from __future__ import annotations

from pathlib import Path

from vhrdata.errors import StatsError
from vhrdata.records import COMMIT_DIR, RECORDS_FILE, read_records, read_records_meta
from vhrdata.stats.compute import Callback, DatasetReport, records_stats
from vhrdata.stats.store import looks_like_store, store_stats


def detect_input(path: str | Path) -> str:
    """Say whether `path` is a records folder ("records") or a store ("store").

    Raises:
        StatsError: when it is neither.
    """
    p = Path(path)
    if not p.exists():
        raise StatsError(f"{p} does not exist; give a records folder (from `vhrdata ingest`) or a store")
    if p.is_file() and p.suffix == ".parquet" or (p / RECORDS_FILE).exists() or (p / COMMIT_DIR).exists():
        return "records"
    if p.is_dir():
        if looks_like_store(p):
            return "store"
    raise StatsError(
        f"{p} holds neither {RECORDS_FILE} nor a store; run `vhrdata ingest` (and `vhrdata split`) first, "
        "or pass the folder that `vhrdata build-lmdb` wrote"
    )


def compute_stats(
    path: str | Path,
    *,
    batch_sizes: tuple[int, ...] = (8, 32, 128),
    samples_per_split: int = 4,
    min_train_count: int = 5,
    thumbnail_width: int = 800,
    seed: int = 0,
    callback: Callback | None = None,
) -> DatasetReport:
    """Compute the statistics report of a records folder or a store.

    Args:
        path: a records folder (records.parquet, written by ingest, ideally after split) or a store folder.
        batch_sizes: batch sizes at which a store's padding waste is reported.
        samples_per_split: thumbnails shown per split.
        min_train_count: a val/test character seen fewer times than this in train is a coverage gap.
        thumbnail_width: largest thumbnail width in pixels.
        seed: seed of the sample choice and of the shuffled batches in the padding estimate.
        callback: called as callback(done, total) after each stage.

    Returns:
        A DatasetReport.

    Example:
        >>> report = compute_stats("runs/records")                        # doctest: +SKIP
        >>> write_report(report, "runs/report")                           # doctest: +SKIP
    """
    kind = detect_input(path)
    if kind == "store":
        return store_stats(
            path,
            batch_sizes=batch_sizes,
            samples_per_split=samples_per_split,
            min_train_count=min_train_count,
            thumbnail_width=thumbnail_width,
            seed=seed,
            callback=callback,
        )
    p = Path(path)
    directory = p.parent if p.suffix == ".parquet" else p
    df = read_records(p)
    meta = read_records_meta(p)
    report = records_stats(
        df,
        directory=directory,
        records_meta=meta,
        samples_per_split=samples_per_split,
        min_train_count=min_train_count,
        thumbnail_width=thumbnail_width,
        seed=seed,
        callback=callback,
    )
    report.data["input"] = {"path": str(Path(path).resolve()), "kind": "records"}
    return report
