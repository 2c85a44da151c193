"""`vhrmodel tune-lm`."""

from __future__ import annotations

import click

from vhrdata.cli.common import handle_errors
from vhrmodel.cli.checks import ArgumentError
from vhrmodel.lm import LM_DIGIT_CLASS, LM_ORDER
from vhrmodel.tune import DEFAULT_LEXICON_PAIRS, DEFAULT_WEIGHTS


def _comma_list(value: str, option: str, convert, minimum, kind: str, noun: str) -> list:
    """A comma-separated option value as a list of numbers >= minimum; else a one-line error naming the option."""
    try:
        items = [convert(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ArgumentError(f"{option} {value!r} is not a comma-separated list of {kind}") from None
    if not items or any(x < minimum for x in items):
        raise ArgumentError(f"{option} {value!r}: give one or more {noun} >= {minimum}")
    return items


def _weights(value: str) -> list[float]:
    return _comma_list(value, "--weights", float, 0, "numbers", "weights")


def _widths(value: str) -> list[int]:
    return _comma_list(value, "--beam-width", int, 1, "whole numbers", "beam widths")


@click.command("tune-lm")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(path_type=str),
              help="Model file (e.g. RUN/model.keras), an export folder, or `starter`.")
@click.option("--store", required=True, type=click.Path(path_type=str), help="Store to tune on.")
@click.option("--split", default="val", show_default=True, help="Split to tune on; test splits are refused.")
@click.option("--lm", "lm_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="Character LM file (RUN/charlm.json) to tune and write the chosen values into.")
@click.option("--out", "-o", "out_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the tuned LM here instead of replacing --lm.")
@click.option("--weights", default=",".join(f"{w:g}" for w in DEFAULT_WEIGHTS), show_default=True,
              help="LM weights to try, comma-separated.")
@click.option("--lexicon/--no-lexicon", default=True, show_default=True,
              help="Also grid-search the lexicon thresholds (and decide whether the lexicon helps).")
@click.option("--beam-width", default="10", show_default=True,
              help="Beams kept; several widths, comma-separated (e.g. 10,25), are each tried with every weight "
                   "and the best is stored with the LM.")
@click.option("--lexicon-pairs", type=click.IntRange(min=1), default=DEFAULT_LEXICON_PAIRS, show_default=True,
              help="Try the lexicon settings after this many of the best (beam width, weight) pairs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("-q", "--quiet", is_flag=True,
              help="Print only the choice, not every setting's CER (the default grid has about 2,000 rows).")
@handle_errors
def tune_lm_cmd(model_path, store, split, lm_path, out_path, weights, lexicon, beam_width, lexicon_pairs, batch_size,
                quiet):
    """Choose --lm-weight and the lexicon thresholds on val; store them in the LM file.

    Runs the model once over the split, then beam search with each LM weight (at each --beam-width),
    then the lexicon with each threshold setting on the lines of the best --lexicon-pairs (width,
    weight) pairs, and prints the CER of each. The
    chosen values are written into the LM file (atomically; --out for a copy), and `predict`,
    `evaluate` and `serve` use them by default when given that LM (an explicit --lm-weight
    wins; --lexicon defaults to on when it lowered the val CER). Test splits are refused: test
    is for reporting only.

    Example:

    \b
        vhrmodel tune-lm --model work/run/model.keras --store work/store --split val --lm work/run/charlm.json
    """
    from vhrmodel.cli.checks import ArgumentError, check_model_path, open_store_checked
    from vhrmodel.cli.evaluate import load_lm
    from vhrmodel.tune import check_tune_split

    try:
        check_tune_split(split)
    except ValueError as ex:
        raise ArgumentError(str(ex)) from None
    weight_list = _weights(weights)
    width_list = _widths(beam_width)
    check_model_path(model_path)
    open_store_checked(store, {split: "tuning (--split)"})
    load_lm(lm_path)  # a clear error for a file that is not an LM, before the model loads

    from vhrmodel.tune import tune_lm

    def show(row):
        lex = row["lexicon"]
        if lex is None:
            what = "no lexicon"
        elif lex.get("rescore"):
            what = (f"lexicon rescored, unit bonus {lex['unit_bonus']:g} conf<{lex['max_confidence']:g}"
                    + (f" streets {lex['street_bonus']:g}" if lex.get("streets") else "")
                    + (" hierarchy" if lex.get("hierarchy") else "") + (" prefixes" if lex.get("prefixes") else ""))
        else:
            what = (f"lexicon score>={lex['min_score']:g} margin>={lex['min_margin']:g} conf<{lex['max_confidence']:g}"
                    + (f" hierarchy (score>={lex['min_score_within']:g} within)" if lex.get("hierarchy") else "")
                    + (" prefixes" if lex.get("prefixes") else ""))
        width = f"beam {row['beam_width']} · " if len(width_list) > 1 else ""
        click.echo(f"{width}lm_weight {row['lm_weight']:.2f} · {what} · CER {row['cer']:.2%}")

    result = tune_lm(model_path, store, lm_path, split=split, out=out_path, weights=weight_list,
                     snap_grid=None if lexicon else {}, beam_width=width_list, lexicon_pairs=lexicon_pairs,
                     batch_size=batch_size, callback=None if quiet else show)
    t = result["tuned"]
    chose_width = f"beam width {t['tuned_on']['beam_width']}, " if len(width_list) > 1 else ""
    click.echo(f"chose {chose_width}lm_weight {t['lm_weight']:g}, lexicon {'on' if t['lexicon'] else 'off'} "
               f"(val CER {t['tuned_on']['cer']:.2%}); wrote {result['path']}")


@click.command("build-lm")
@click.option("--store", required=True, type=click.Path(path_type=str), help="Store whose training labels fit the LM.")
@click.option("--out", "-o", "out_path", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The LM file to write (e.g. RUN/charlm.json, replaced atomically).")
@click.option("--split", default="train", show_default=True,
              help="Split whose labels fit the LM: the model's training split, never val or test.")
@click.option("--order", type=click.IntRange(min=1), default=LM_ORDER, show_default=True,
              help="n of the character n-gram.")
@click.option("--address-lm/--no-address-lm", default=True, show_default=True,
              help="Add every administrative unit name (vietnamadminunits) to the labels.")
@click.option("--digit-class/--no-digit-class", default=LM_DIGIT_CLASS, show_default=True,
              help="See every digit as one class: the LM knows where a number goes, not which digits "
                   "(house numbers are arbitrary).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the address corpus' written forms.")
@handle_errors
def build_lm_cmd(store, out_path, split, order, address_lm, digit_class, seed):
    """Write a character LM from a store's training labels, as `train` writes RUN/charlm.json.

    For a run trained with another --lm-order, or before its LM recorded the units of its
    training labels (which the lexicon uses). Tune it on val afterwards with `tune-lm`.

    Example:

    \b
        vhrmodel build-lm --store work/store --out work/run/charlm.json --order 8
        vhrmodel tune-lm --model work/run/model.keras --store work/store --lm work/run/charlm.json
    """
    from vhrmodel.cli.checks import open_store_checked
    from vhrmodel.lm import read_char_lm, write_store_lm
    from vhrmodel.tune import check_tune_split

    try:
        check_tune_split(split)  # the same rule: test text never goes into a decoder's LM
    except ValueError:
        raise click.BadParameter(f"{split!r} is a test split; fit the LM on the training split",
                                 param_hint="--split") from None
    if split == "val":
        raise click.BadParameter("val chooses the LM weight; fit the LM on the training split", param_hint="--split")
    opened = open_store_checked(store, {split: "the LM's labels (--split)"})
    try:
        path = write_store_lm(opened, out_path, split=split, order=order, address_lm=address_lm, seed=seed,
                              digit_class=digit_class)
    except OSError as ex:  # nothing is half-written: the file is replaced atomically or not at all
        raise click.ClickException(f"cannot write {out_path} ({ex.strerror or ex}); choose another --out, or make "
                                   "room and run again") from None
    built = read_char_lm(path).meta
    sources = ", ".join(f"{s['name']} ({s['lines']:,} lines)" for s in built["built"]["sources"])
    click.echo(f"wrote {path}: order {order}{', digits as one class' if digit_class else ''}, {sources}, "
               f"{len(built.get('units') or []):,} units for the lexicon")


COMMANDS = [tune_lm_cmd, build_lm_cmd]
