"""`vhrdata ingest`, `vhrdata split`, `vhrdata merge` and `vhrdata check-leakage`."""

from __future__ import annotations

from pathlib import Path

import click

from vhrdata.cli.common import LazyProgress, handle_errors
from vhrdata.images import SizeLimits
from vhrdata.ingest import IngestSettings, ingest
from vhrdata.merge import MergeInput, merge_records
from vhrdata.raw_formats import DEFAULT_MAX_FILE_BYTES, LAYOUTS
from vhrdata.records import SPLITS, read_records
from vhrdata.split import GROUPS, METHODS, check_leakage, parse_ratios, split_records
from vhrdata.text import TONE_STYLES, CleanSettings


def echo_counts(n_in: int, kept: int, quarantined: int, by_reason: dict, kept_word: str = "kept") -> None:
    click.echo(f"in {n_in} · {kept_word} {kept} · quarantined {quarantined}")
    for reason, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"  {reason}: {n}")


@click.command("ingest")
@click.argument("src", type=click.Path(path_type=str))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Output folder for records.parquet, quarantine.jsonl and ingest.json.")
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default="auto", show_default=True,
              help="Dataset layout; auto detects it from the folder.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="Encoding of annotation, label and manifest files (e.g. cp1258, latin-1).")
@click.option("--tone-style", type=click.Choice(TONE_STYLES), default="new", show_default=True,
              help="Vietnamese tone placement: new (hoà, thuỷ), old (hòa, thủy) or keep as written.")
@click.option("--no-nfc", is_flag=True, help="Do not normalise labels to Unicode NFC (implies --tone-style keep).")
@click.option("--keep-whitespace", is_flag=True, help="Do not strip labels or collapse runs of whitespace.")
@click.option("--keep-control-chars", is_flag=True, help="Do not remove control and zero-width characters.")
@click.option("--keep-duplicate-images", is_flag=True, help="Keep byte-identical images instead of quarantining copies.")
@click.option("--min-width", type=int, default=SizeLimits.min_width, show_default=True,
              help="Narrower images are quarantined as image_too_small.")
@click.option("--min-height", type=int, default=SizeLimits.min_height, show_default=True,
              help="Lower images are quarantined as image_too_small.")
@click.option("--max-width", type=int, default=SizeLimits.max_width, show_default=True,
              help="Wider images are quarantined as image_too_large, from the header alone.")
@click.option("--max-height", type=int, default=SizeLimits.max_height, show_default=True,
              help="Taller images are quarantined as image_too_large, from the header alone.")
@click.option("--max-pixels", type=int, default=SizeLimits.max_pixels, show_default=True,
              help="Images with more pixels (width × height) are quarantined as image_too_large.")
@click.option("--max-file-mb", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_MAX_FILE_BYTES / 2**20, show_default=True,
              help="Larger image or annotation files are not read (file_too_large).")
@click.option("--allow-outside", is_flag=True,
              help="Read images whose path leads outside the dataset folder (a manifest's own folder); "
                   "without it they are quarantined as path_outside_dataset.")
@click.option("--workers", type=int, default=0, show_default=True, help="Image-checking threads (0: one per core).")
@handle_errors
def ingest_cmd(src, out, layout, encoding, tone_style, no_nfc, keep_whitespace, keep_control_chars,
               keep_duplicate_images, min_width, min_height, max_width, max_height, max_pixels, max_file_mb,
               allow_outside, workers):
    """Ingest a raw dataset: clean labels, check images, quarantine bad items.

    Writes OUT/records.parquet (kept lines), OUT/quarantine.jsonl (rejected items with a reason) and
    OUT/ingest.json (settings and counts), all three or none. Every item read is either kept or
    quarantined. OUT must be new, empty, or an earlier ingest's output.

    SRC is a dataset folder, a manifest file (.csv/.tsv/.parquet with a path,text[,writer][,id] header,
    or header-less path<TAB>text lines as VietOCR and PaddleOCR write them), or a folder holding exactly
    one manifest. Image paths must stay inside the dataset folder unless --allow-outside is given.

    Example:

        vhrdata ingest data/kalapa-sample --out work/kalapa

        vhrdata ingest data/lines/train_annotation.txt --out work/lines --allow-outside
    """
    try:
        settings = IngestSettings(
            layout=layout,
            encoding=encoding,
            clean=CleanSettings(nfc=not no_nfc, tone_style="keep" if no_nfc else tone_style,
                                whitespace=not keep_whitespace, control_chars=not keep_control_chars),
            limits=SizeLimits(min_width, min_height, max_width, max_height, max_pixels),
            dedupe_images=not keep_duplicate_images,
            workers=workers,
            allow_outside=allow_outside,
            max_file_bytes=max(1, int(max_file_mb * 2**20)),
        )
    except ValueError as ex:
        raise click.BadParameter(str(ex)) from None
    with LazyProgress("checking images") as progress:
        result = ingest(src, out, settings, callback=progress)
    manifest = f" ({result.info['manifest']})" if result.info.get("manifest") else ""
    click.echo(f"layout {result.layout}{manifest} · writers from {result.info.get('writer_source')}")
    echo_counts(result.n_in, result.kept, result.quarantined, result.by_reason)
    if result.info.get("blank_lines"):
        click.echo(f"note: {result.info['blank_lines']} blank line(s) skipped (not counted as items)")
    if result.info.get("unannotated_images"):
        click.echo(f"note: {result.info['unannotated_images']} image(s) under images/ have no annotation line")
    click.echo(f"wrote {result.out}/records.parquet")


def echo_leakage(report: dict) -> None:
    wl, il, st = report["writer_leaks"], report["image_leaks"], report["shared_texts"]
    click.echo(f"leakage: writers in two splits {wl['count']} · identical images in two splits {il['count']} · "
               f"texts shared across splits {st['count']} ({st['lines']} lines)")
    for ex in wl["examples"]:
        click.echo(f"  writer {ex['writer']}: {ex['splits']}")
    for ex in il["examples"]:
        click.echo(f"  identical image: {', '.join(ex)}")
    for ex in st["examples"][:3]:
        click.echo(f"  shared text ({'/'.join(ex['splits'])}): {ex['text']}")


@click.command("split")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--ratios", default="0.8,0.1,0.1", show_default=True, help="train,val,test shares of lines.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--group", type=click.Choice(GROUPS), default="writer", show_default=True,
              help="Keep each writer (or each image) in one split.")
@click.option("--method", type=click.Choice(METHODS), default="stable", show_default=True,
              help="stable: a writer's split depends only on its id and the seed; "
                   "balanced: meet the ratios as closely as writers allow.")
@handle_errors
def split_cmd(directory, ratios, seed, group, method):
    """Split ingested records into train/val/test by writer, then check for leakage.

    Adds a `split` column to DIRECTORY/records.parquet and writes DIRECTORY/split.json.

    Example:

        vhrdata split work/kalapa --ratios 0.8,0.1,0.1 --seed 0
    """
    result, leakage = split_records(directory, parse_ratios(ratios), seed, group, method)
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"grouped by {result.group} · method {result.method} · seed {seed}")
    for s in SPLITS:
        click.echo(f"  {s:5s} {result.lines[s]:7d} lines  {result.groups[s]:6d} groups  "
                   f"{result.achieved[s]:.3f} (asked {result.requested[SPLITS.index(s)]:.3f})")
    for warning in result.warnings:
        click.echo(f"warning: {warning}")
    echo_leakage(leakage)
    if not leakage["ok"]:
        raise click.ClickException("leakage found between splits (see above)")


@click.command("check-leakage")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=str))
@handle_errors
def check_leakage_cmd(directory):
    """Check split records for writers or identical images in two splits.

    Texts shared across splits are listed but do not fail the check: identical addresses are common.

    Example:

        vhrdata check-leakage work/kalapa
    """
    report = check_leakage(read_records(directory, require_split=True))
    echo_leakage(report)
    if not report["ok"]:
        raise click.ClickException("leakage found between splits")
    click.echo("no writer or image leaks")


@click.command("merge")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str),
              help="The merged records folder (new, or an earlier merge's output).")
@click.option("--train-only", "train_only", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=str),
              help="A records folder whose lines all go to train (split or not), e.g. synthetic lines. Repeatable.")
@handle_errors
def merge_cmd(inputs, out, train_only):
    """Merge records folders into one split records folder, ready for build-lmdb.

    Each INPUTS folder keeps its own split (so its test lines stay its test lines); each --train-only
    folder goes to train whole. Ids and writers are prefixed with the folder's name, a later copy of an
    identical image is quarantined, and the inputs' quarantined items are carried over.

    Example:

        vhrdata merge work/cinnamon --train-only work/synth-records --out work/mixed
    """
    items = [MergeInput(Path(p)) for p in inputs] + [MergeInput(Path(p), train_only=True) for p in train_only]
    if not items:
        raise click.UsageError("name at least one records folder (INPUTS or --train-only)")
    result = merge_records(items, out)
    for d in result.info["inputs"]:
        where = "train only" if d["train_only"] else " / ".join(f"{s} {d['lines'][s]}" for s in SPLITS)
        click.echo(f"  {d['name']}: {d['kept']} lines ({where}) · quarantined {d['quarantined']}")
    echo_counts(result.n_in, result.kept, result.quarantined, result.by_reason)
    click.echo("merged: " + " · ".join(f"{s} {result.lines[s]}" for s in SPLITS))
    echo_leakage(result.info["split"]["leakage"])
    click.echo(f"wrote {result.out}/records.parquet")


COMMANDS = [ingest_cmd, split_cmd, merge_cmd, check_leakage_cmd]
