"""`vhrmodel tune-lm`."""

from __future__ import annotations

import click

from vhrdata.cli.common import handle_errors
from vhrmodel.tune import DEFAULT_WEIGHTS


def _weights(value: str) -> list[float]:
    try:
        weights = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint="--weights") from None
    if not weights or any(w < 0 for w in weights):
        raise click.BadParameter(f"{value!r}: give one or more weights >= 0", param_hint="--weights")
    return weights


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
@click.option("--beam-width", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@handle_errors
def tune_lm_cmd(model_path, store, split, lm_path, out_path, weights, lexicon, beam_width, batch_size):
    """Choose --lm-weight and the lexicon thresholds on val; store them in the LM file.

    Runs the model once over the split, then beam search with each LM weight, then the lexicon
    with each threshold setting on the best weight's lines, and prints the CER of each. The
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
    check_model_path(model_path)
    open_store_checked(store, {split: "tuning (--split)"})
    load_lm(lm_path)  # a clear error for a file that is not an LM, before the model loads

    from vhrmodel.tune import tune_lm

    def show(row):
        lex = row["lexicon"]
        what = ("no lexicon" if lex is None else
                f"lexicon score>={lex['min_score']:g} margin>={lex['min_margin']:g} conf<{lex['max_confidence']:g}"
                + (f" hierarchy (score>={lex['min_score_within']:g} within)" if lex.get("hierarchy") else "")
                + (" prefixes" if lex.get("prefixes") else ""))
        click.echo(f"lm_weight {row['lm_weight']:.2f} · {what} · CER {row['cer']:.2%}")

    result = tune_lm(model_path, store, lm_path, split=split, out=out_path, weights=weight_list,
                     snap_grid=None if lexicon else {}, beam_width=beam_width, batch_size=batch_size, callback=show)
    t = result["tuned"]
    click.echo(f"chose lm_weight {t['lm_weight']:g}, lexicon {'on' if t['lexicon'] else 'off'} "
               f"(val CER {t['tuned_on']['cer']:.2%}); wrote {result['path']}")


COMMANDS = [tune_lm_cmd]
