"""`vhrdata build-lmdb` and `vhrdata verify`."""

from __future__ import annotations

import click

from vhrdata.cli.common import LazyProgress, handle_errors
from vhrdata.preprocess import BINARIZE_MODES, PreprocessSettings
from vhrdata.store import build_store, verify_store
from vhrdata.store.writer import DEFAULT_DOWNSAMPLE


def _parse_shards(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"must be 'auto' or a positive integer. Received: {value!r}") from None
    if n < 1:
        raise click.BadParameter(f"must be 'auto' or a positive integer. Received: {value!r}")
    return n


@click.command("build-lmdb")
@click.argument("records", type=click.Path(path_type=str))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Store folder to write.")
@click.option("--height", type=int, default=64, show_default=True, help="Output line height in pixels.")
@click.option("--max-width", type=int, default=2048, show_default=True,
              help="Widest output; wider lines are squeezed to it (counted in the summary).")
@click.option("--binarize", type=click.Choice(BINARIZE_MODES), default="none", show_default=True)
@click.option("--crop-margins/--no-crop-margins", default=False, show_default=True,
              help="Cut empty margins around the ink before resizing.")
@click.option("--normalize-contrast/--no-normalize-contrast", default=False, show_default=True,
              help="Stretch grey levels so ink is black and paper white.")
@click.option("--flatten-background/--no-flatten-background", default=False, show_default=True,
              help="Divide by a large-kernel background estimate, then stretch: shaded or grey photos "
                   "become dark ink on white.")
@click.option("--downsample", type=int, default=DEFAULT_DOWNSAMPLE, show_default=True,
              help="The model's width downsampling; lines whose label needs more CTC frames are quarantined.")
@click.option("--shards", "--num-shards", "shards", default="auto", show_default=True,
              help="Shards per split: auto (about 512 MiB each) or N.")
@click.option("--shard-index", type=int, default=None,
              help="Build only shard I of every split (fan-out over machines; needs --shards N).")
@click.option("--assemble-only", is_flag=True, help="Build nothing; write index.json from finished shards.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Preprocessing processes: 0 = one per core (as in ingest), 1 = work in this process.")
@click.option("--overwrite", is_flag=True, help="Delete an existing store (or, with --shard-index, that shard) first.")
@handle_errors
def build_lmdb_cmd(records, out, height, max_width, binarize, crop_margins, normalize_contrast, flatten_background,
                   downsample, shards, shard_index, assemble_only, workers, overwrite):
    """Preprocess split records once into a sharded LMDB store.

    Writes OUT/index.json (settings and their hash, alphabet, counts, histograms, shard hashes),
    OUT/<split>/shard-NNNNN-of-MMMMM.lmdb/ and OUT/quarantine.jsonl (lines refused, e.g.
    ctc_infeasible, undecodable_image, label_too_long, build_failed). Rerunning resumes: finished
    shards are kept. A store of other settings or records is refused unless --overwrite is given;
    --overwrite builds beside the old store and swaps it in at the end, so a failed rebuild (a
    full disk) leaves the old store intact. A second build into the same store is refused
    ("store locked by pid N").

    Example:

        vhrdata build-lmdb work/cinnamon --out work/cinnamon-store --height 64

    Fan-out (any scheduler; the last shard to finish assembles index.json):

        vhrdata build-lmdb work/big --out store --shards 8 --shard-index 3
    """
    try:
        settings = PreprocessSettings(height=height, max_width=max_width, binarize=binarize,
                                      crop_margins=crop_margins, normalize_contrast=normalize_contrast,
                                      flatten_background=flatten_background)
    except ValueError as ex:
        raise click.BadParameter(str(ex)) from None
    n_shards = _parse_shards(shards)
    if shard_index is not None and n_shards == "auto":
        raise click.BadParameter("--shard-index needs an explicit --shards N (every fanned-out job must agree on N)")
    try:
        with LazyProgress("preprocessing") as progress:
            result = build_store(
                records, out, settings, downsample=downsample, shards=n_shards, shard_index=shard_index,
                workers=workers, overwrite=overwrite, assemble_only=assemble_only, callback=progress,
            )
    except ValueError as ex:
        raise click.BadParameter(str(ex)) from None
    c = result.counts
    click.echo(f"in {c['in']} · stored {c['stored']} · quarantined {c['quarantined']}")
    for reason, n in sorted(c["by_reason"].items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"  {reason}: {n}")
    if result.capped:
        click.echo(f"wider than --max-width {max_width} (squeezed): {result.capped}")
    if result.kept:
        click.echo(f"kept {len(result.kept)} finished shard(s) from an earlier run")
    if result.index is not None:
        for name, info in result.index["splits"].items():
            click.echo(f"  {name}: {info['count']} lines in {len(info['shards'])} shard(s)")
        done = "up to date" if not result.built and not assemble_only else "wrote"
        click.echo(f"{done}: {result.store}/index.json (settings {result.index['settings_hash'][:12]})")
    else:
        click.echo(f"built {len(result.built)} shard(s); {len(result.missing)} still missing before index.json "
                   "can be assembled (it is written when the last one finishes, or with --assemble-only)")


@click.command("verify")
@click.argument("store", type=click.Path(path_type=str))
@handle_errors
def verify_cmd(store):
    """Check a store: schema, settings hash, counts, every record's CRC32 and every shard's hash.

    Exits with status 1 and names the shard and key of every fault.

    Example:

        vhrdata verify work/cinnamon-store
    """
    with LazyProgress("verifying") as progress:
        report = verify_store(store, callback=progress)
    splits = " · ".join(f"{k} {v}" for k, v in report.splits.items())
    click.echo(f"{report.records} records in {report.shards} shard(s) ({splits}), "
               f"{report.image_bytes / 1e6:.1f} MB of images read")
    counts = report.index.get("counts", {})
    click.echo(f"in {counts.get('in')} · stored {counts.get('stored')} · quarantined {counts.get('quarantined')}")
    if report.ok:
        click.echo(f"ok: {store}")
        return
    for fault in report.faults:
        click.echo(f"FAULT {fault}", err=True)
    raise click.ClickException(f"{store}: {len(report.faults)} fault(s); rebuild the named shards with "
                               "`vhrdata build-lmdb --overwrite`")


COMMANDS = [build_lmdb_cmd, verify_cmd]
