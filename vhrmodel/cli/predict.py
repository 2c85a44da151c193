"""`vhrmodel predict`: read line images (files, folders, glob patterns) and print or write their text."""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

from vhrdata.cli.common import LazyProgress, handle_errors
from vhrmodel.cli.evaluate import decoding_options, load_lm

OUT_SUFFIXES = (".csv", ".jsonl")
CSV_COLUMNS = ("path", "text", "confidence", "ms", "error")
_GLOB_CHARS = set("*?[")


@dataclass
class _Item:
    """One image to read: its path as shown, and why it cannot be read before the model sees it."""

    path: str
    error: str | None = None


def _image_suffixes() -> tuple[str, ...]:
    from vhrdata.raw_formats import IMAGE_SUFFIXES

    return tuple(IMAGE_SUFFIXES)


def _images_in(folder: Path, recursive: bool) -> list[str]:
    suffixes = _image_suffixes()
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p) for p in found if p.is_file() and p.suffix.lower() in suffixes)


def collect_images(inputs: tuple[str, ...], recursive: bool = False) -> list[_Item]:
    """Expand files, folders (their images, sorted by path) and glob patterns, in argument order.

    A pattern is expanded here (quoted patterns reach us unexpanded, and Windows shells never
    expand them). A missing file, a folder without images or a pattern that matches nothing
    becomes an item with an error, so it is reported like an unreadable image. Duplicates are read once.
    """
    items: list[_Item] = []
    seen: set[str] = set()

    def add(path: str, error: str | None = None) -> None:
        key = os.path.normpath(path) if error is None else f"\0{path}"
        if key not in seen:
            seen.add(key)
            items.append(_Item(path, error))

    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            found = _images_in(path, recursive)
            if not found:
                add(arg, f"no images ({', '.join(_image_suffixes())}) in folder"
                         + ("" if recursive else "; pass -r to look in its subfolders"))
            for f in found:
                add(f)
        elif path.exists():
            add(arg)
        elif _GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            files = []
            for m in matches:
                files += _images_in(Path(m), recursive) if Path(m).is_dir() else [m]
            if not files:
                add(arg, "no file matches this pattern")
            for f in files:
                add(f)
        else:
            add(arg, "no such file or folder")
    return items


def escape_field(text: str) -> str:
    """Backslash, tab, newline and carriage return as \\\\, \\t, \\n and \\r, so a PATH<TAB>TEXT line stays one line."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _row(path: str, p, error: str | None, with_chars: bool) -> dict:
    row = {"path": path, "text": p.text if p is not None and error is None else "",
           "confidence": float(f"{p.confidence:.6g}") if p is not None and error is None else None,
           "ms": p.ms if p is not None and error is None else None, "error": error}
    if with_chars:
        row["chars"] = ([{"char": c.char, "confidence": c.confidence, "x": list(c.x),
                          "x_original": list(c.x_original) if c.x_original is not None else None}
                         for c in p.chars] if p is not None and error is None else [])
    return row


class _Writer:
    """Writes result rows to a .csv or .jsonl file as they come."""

    def __init__(self, path: str):
        self.path = path
        self.kind = Path(path).suffix.lower()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w", encoding="utf-8", newline="")
        if self.kind == ".csv":
            self.csv = csv.DictWriter(self.file, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.kind == ".csv":
            self.csv.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
        else:
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.file.close()


@click.command("predict")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(path_type=str),
              help="Model file from `vhrmodel train`, an export folder (`vhrmodel export`), or `starter` "
                   "(the model shipped with vhr).")
@click.argument("images", nargs=-1, required=True, type=str)
@click.option("-r", "--recursive", is_flag=True, help="Also read the images in the subfolders of folder arguments.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per image: path, text, confidence, ms, chars (per-character confidence and "
                   "x position), error.")
@click.option("--out", "-o", "out_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the results to FILE.csv (path, text, confidence, ms, error) or FILE.jsonl (the --json "
                   "objects) instead of printing them.")
@click.option("--decoder", type=click.Choice(("greedy", "beam")), default="greedy", show_default=True)
@click.option("--beam-width", type=click.IntRange(min=1), default=None,
              help="Beams kept by --decoder beam [default: the width --lm was tuned at, else 10].")
@decoding_options
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Lines per model call (ms per line is measured at this batch size).")
@click.option("--no-warm-up", is_flag=True, help="Count the first call's graph tracing in the first line's time.")
@handle_errors
def predict_cmd(model_path, images, recursive, as_json, out_file, decoder, beam_width, lm, lm_weight, lexicon, batch_size,
                no_warm_up):
    """Read the text of line images: files, folders of images, or glob patterns.

    IMAGES are files, folders (their images, sorted by path; -r for subfolders) or patterns
    such as 'scans/*.png' (quote them; vhr expands them itself). With one image file, prints its
    text. Otherwise prints PATH<TAB>TEXT per image, with backslashes, tabs and line breaks in
    PATH and TEXT written as \\\\, \\t and \\n (use --json or --out FILE.jsonl for exact values).
    An image that cannot be read (missing, not an image, truncated) is reported on stderr in one
    line and the others are still read; the exit status is then 1. Images are preprocessed with
    the settings stored in the model, exactly as its store was.

    Example:

    \b
        vhrmodel predict --model work/runs/small/model.keras line1.png line2.png --json
        vhrmodel predict --model starter 'scans/*.png' --out results.csv
        vhrmodel predict --model work/run/model.keras my-lines/images -r --out results.jsonl
        vhrmodel predict --model work/run/model.keras line.png --decoder beam --lm work/run/charlm.json --lexicon
    """
    from vhrmodel.cli.checks import ArgumentError, check_lm_decoder, check_model_path

    # Checked before Keras is imported.
    check_lm_decoder(lm, decoder, lm_weight, lexicon)
    if out_file is not None and Path(out_file).suffix.lower() not in OUT_SUFFIXES:
        raise ArgumentError(f"--out {out_file} must end in .csv or .jsonl")
    check_model_path(model_path)
    items = collect_images(images, recursive)
    readable = [it.path for it in items if it.error is None]
    if not readable:
        if len(items) == 1:
            raise click.ClickException(f"{items[0].path}: {items[0].error}")
        for it in items:
            click.echo(f"error: {it.path}: {it.error}", err=True)
        raise click.ClickException(f"none of the {len(items)} inputs is an image to read")
    lm_model = load_lm(lm)

    from vhrmodel.lm import resolve_lexicon
    from vhrmodel.predict import Recognizer

    recognizer = Recognizer(model_path, decoder=decoder, beam_width=beam_width, lm=lm_model, lm_weight=lm_weight,
                            lexicon=resolve_lexicon(lm_model, lexicon))
    if not no_warm_up:
        recognizer.warm_up()
    with_chars = as_json or (out_file is not None and out_file.lower().endswith(".jsonl"))
    show_progress = out_file is not None and len(readable) > 1
    with LazyProgress("reading") as progress:
        predictions = recognizer.recognize(readable, batch_size=batch_size, on_error="report", chars=with_chars,
                                           callback=progress if show_progress else None)
    by_path = dict(zip(readable, predictions))

    single = len(images) == 1 and len(items) == 1 and Path(images[0]).is_file()
    writer = _Writer(out_file) if out_file is not None else None
    failed = 0
    single_error = None
    try:
        for it in items:
            p = by_path.get(it.path) if it.error is None else None
            error = it.error if it.error is not None else (p.error if p is not None else "not read")
            if error is not None:
                failed += 1
                if single:
                    single_error = f"{it.path}: {_one_line(error)}"
                else:
                    click.echo(f"error: {it.path}: {_one_line(error)}", err=True)
            row = _row(it.path, p, error, with_chars)
            if writer is not None:
                writer.write(row)
            elif as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
            elif error is None:
                click.echo(escape_field(row["text"]) if single else f"{escape_field(it.path)}\t{escape_field(row['text'])}")
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        click.echo(f"wrote {len(items)} results to {out_file}", err=True)
    if failed:
        if single_error is not None:
            raise click.ClickException(single_error)
        raise click.ClickException(f"{failed} of {len(items)} images could not be read (see the lines above)")


COMMANDS = [predict_cmd]
