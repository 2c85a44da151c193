"""`vhrdata stats`: the dataset statistics report."""

from __future__ import annotations

import time

import click

from vhrdata.cli.common import LazyProgress, handle_errors
from vhrdata.stats import compute_stats, write_report


def _batch_sizes(ctx, param, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"give comma-separated positive integers like 8,32,128. Received: {value!r}")
    if not sizes or any(s <= 0 for s in sizes):
        raise click.BadParameter(f"give comma-separated positive integers like 8,32,128. Received: {value!r}")
    return sizes


@click.command("stats")
@click.argument("src", type=click.Path(exists=True, path_type=str))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Report folder: report.json, report.md (+ assets/) and a self-contained report.html.")
@click.option("--samples", type=click.IntRange(min=0), default=4, show_default=True,
              help="Sample thumbnails shown per split.")
@click.option("--min-train-count", type=click.IntRange(min=1), default=5, show_default=True,
              help="A val/test character seen fewer times in train is listed as a coverage gap.")
@click.option("--batch-sizes", default="8,32,128", show_default=True, callback=_batch_sizes,
              help="Batch sizes for the padding estimate (stores only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the sample choice and batch shuffles.")
@click.option("--format", "formats", default="json,md,html", show_default=True,
              help="Which files to write: any of json, md, html, comma-separated.")
@handle_errors
def stats_cmd(src, out, samples, min_train_count, batch_sizes, seed, formats):
    """Write a statistics report of a records folder (after ingest/split) or a store.

    SRC is a folder holding records.parquet (from `vhrdata ingest`, ideally after `vhrdata split`),
    or a store folder. The report covers counts per split, writer and source, label lengths, image
    sizes, character frequencies, Vietnamese tones (ngang, huyền, sắc, hỏi, ngã, nặng) and vowel
    diacritics per split, charset coverage of val/test by train, the quarantine by reason, the
    leakage check and sample thumbnails; for a store also widths after preprocessing, padding per
    batch and CTC feasibility.

    Example:

        vhrdata stats work/cinnamon --out work/cinnamon/report

    For a store (adds preprocessed widths, padding per batch size and CTC feasibility):

        vhrdata stats work/cinnamon-store --out work/cinnamon-report --batch-sizes 16,64
    """
    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    bad = sorted(set(fmts) - {"json", "md", "html"})
    if bad or not fmts:
        raise click.BadParameter(f"formats must be among json, md, html. Received: {formats!r}",
                                 param_hint="--format")
    start = time.perf_counter()
    with LazyProgress("computing statistics") as progress:
        report = compute_stats(src, batch_sizes=batch_sizes, samples_per_split=samples,
                               min_train_count=min_train_count, seed=seed, callback=progress)
    with LazyProgress("writing report") as progress:
        written = write_report(report, out, formats=fmts, callback=progress)
    d = report.data
    splits = " · ".join(f"{s} {n}" for s, n in d["counts"]["by_split"].items()) or "not split"
    click.echo(f"{d['counts']['total']} lines ({splits}) · {d['characters']['distinct']} characters · "
               f"quarantined {d['quarantine']['total']}")
    cov = d["coverage"]
    if cov.get("chars"):
        click.echo(f"coverage: {cov['never_in_train']} val/test characters never in train, "
                   f"{cov['rare_in_train']} fewer than {cov['min_train_count']} times")
    for fmt, path in written.items():
        click.echo(f"wrote {path}")
    click.echo(f"done in {time.perf_counter() - start:.1f} s")


COMMANDS = [stats_cmd]
