"""`vhrdata synth`: generate synthetic handwritten Vietnamese address lines."""

from __future__ import annotations

from pathlib import Path

import click

from vhrdata.cli.common import handle_errors
from vhrdata.synth import CAPTURES, DEFAULT_HEIGHT, FONT_SELECTIONS, LAYOUTS, TEST_CAMERA_SEED, synthesize
from vhrdata.synth.degrade import CAMERA_PRESETS, degrade_records


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--lines", "-n", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Number of text lines.")
@click.option("--writers", "-w", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of synthetic writers (font + habits); lines are shared out among them.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Random seed; the same seed and fonts give the same files.")
@click.option("--layout", type=click.Choice(LAYOUTS), default="kalapa", show_default=True,
              help="kalapa: images/<writer>/<n>.jpg + annotations/<writer>.txt; iam: lines.txt, forms.txt, lines/.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: the usable CPUs, at most 8]. Does not change the output.")
@click.option("--height", default=DEFAULT_HEIGHT, show_default=True, type=click.IntRange(min=16),
              help="Nominal line height in pixels (each writer varies it slightly).")
@click.option("--font-dir", "font_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Extra folder of .ttf/.otf fonts (e.g. handwriting fonts); repeatable. "
                   "Fonts missing a Vietnamese letter are skipped.")
@click.option("--fonts", type=click.Choice(FONT_SELECTIONS), default="train", show_default=True,
              help="Handwriting faces from `make fonts`: train (all but the held-out ones), held-out (the faces "
                   "kept for the unseen-font test set) or all; without them, the system fonts (and a warning). "
                   "system: only the system fonts (DejaVu/Noto/Andika) and --font-dir, the same on every machine.")
@click.option("--capture", type=click.Choice(CAPTURES), default="scanner", show_default=True,
              help="scanner: white paper; camera: phone-photo paper and light (shadows, ruled lines, blur, JPEG); "
                   "mix: chosen per line.")
@click.option("--jpeg-quality", default=90, show_default=True, type=click.IntRange(1, 100),
              help="JPEG quality for the kalapa layout.")
@click.option("--overwrite", is_flag=True, help="Replace the output of an earlier synth run in OUT.")
@handle_errors
def synth(out, lines, writers, seed, layout, workers, height, font_dirs, fonts, capture, jpeg_quality, overwrite):
    """Generate synthetic handwritten Vietnamese address lines into OUT.

    Addresses are real province/district/ward triples from vietnamadminunits (the 63-province
    units before 2025, and some of the 2025 structure), with street names, house numbers and the
    abbreviations people write. They are drawn in handwriting faces (`make fonts`), varied per
    writer (size, slant, stroke, baseline, spacing, ink), on scanner or camera paper. OUT must be empty.

    \b
    Example:
        vhrdata synth synth-out --lines 2000 --writers 20 --seed 1 --capture mix
        vhrdata synth synth-iam --layout iam --lines 200 --writers 4
        vhrdata ingest synth-out --out records/
    """
    if writers > lines:
        raise click.BadParameter(f"cannot exceed --lines ({lines}). Received: {writers}", param_hint="--writers")
    with click.progressbar(length=lines, label="synth", show_pos=True) as bar:

        def advance(done: int, total: int) -> None:
            bar.update(done - bar.pos)

        summary = synthesize(
            out, lines=lines, writers=writers, seed=seed, layout=layout, workers=workers, callback=advance,
            height=height, fonts=fonts, font_dirs=font_dirs, capture=capture, jpeg_quality=jpeg_quality, overwrite=overwrite,
        )
    forms = f" · {summary['forms']} forms" if summary["forms"] else ""
    click.echo(
        f"wrote {summary['lines']} lines · {summary['writers']} writers{forms} · {layout} layout · "
        f"{len(summary['fonts'])} fonts · seed {seed} → {out} "
        f"({summary['seconds']:.1f} s, {summary['lines_per_s']:.0f} lines/s on {summary['workers']} workers)"
    )


@click.command("degrade")
@click.argument("records", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (a manifest dataset: images/, manifest.csv, degrade.json).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val", "train", "all"]),
              help="Which split of RECORDS to copy.")
@click.option("--preset", default="test", show_default=True, type=click.Choice(sorted(CAMERA_PRESETS)),
              help="test: the test-camera ranges (stronger than training augmentation); synth: the generator's camera capture.")
@click.option("--seed", default=TEST_CAMERA_SEED, show_default=True, type=click.IntRange(min=0),
              help="Base seed (line k uses [seed, k]); the default is the test-camera seed, which training never uses.")
@click.option("--overwrite", is_flag=True, help="Replace the output of an earlier degrade run in OUT.")
@handle_errors
def degrade(records, out, split, preset, seed, overwrite):
    """Write phone-camera copies of one split of RECORDS (the test-camera evaluation set).

    Each line gets uneven grey light, a vignette, shadows, ruled lines, paper texture, perspective,
    blur, noise and JPEG, with fixed ranges and seed, so the set is the same every time. OUT is a
    manifest dataset: ingest it, split it as all test, and evaluate on it.

    \b
    Example:
        vhrdata degrade work/records --out work/test-camera
        vhrdata ingest work/test-camera --out work/test-camera-records
        vhrdata split work/test-camera-records --ratios 0,0,1
    """
    summary = degrade_records(records, out, split=split, ranges=CAMERA_PRESETS[preset], seed=seed, overwrite=overwrite)
    skipped = f" · {len(summary['skipped'])} skipped (see {out / 'degrade.json'})" if summary["skipped"] else ""
    click.echo(f"wrote {summary['lines']} camera copies of split {split} · preset {preset} · seed {seed} → {out}{skipped}")


COMMANDS = [synth, degrade]
