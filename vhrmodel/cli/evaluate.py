"""`vhrmodel evaluate`."""

from __future__ import annotations

import click

from vhrdata.cli.common import LazyProgress, handle_errors

WORST_DIR = "worst"  # vhrmodel.evaluate.WORST_DIR (that module loads the model runtime)


def load_lm(path: str | None):
    """A `CharNgramLM` from its JSON file, or None."""
    if path is None:
        return None
    from vhrmodel.lm import read_char_lm

    try:
        return read_char_lm(path)
    except ValueError as ex:
        raise click.BadParameter(f"{path} is not a character LM file: {ex}", param_hint="--lm") from None


#: The decoding options `predict`, `evaluate` and `serve` share beside --decoder and --beam-width.
LM_HELP = ("Character LM (JSON, e.g. RUN/charlm.json, built from training labels and the address corpus); "
           "needs --decoder beam. Its tuned values (`vhrmodel tune-lm`) are the defaults.")
LM_WEIGHT_HELP = "Weight of the LM in beam search (default: the LM's tuned value, else 0.5); needs --lm."
LEXICON_HELP = ("Snap low-confidence address fields to administrative unit names (vietnamadminunits); needs "
                "--decoder beam --lm. Default: what tune-lm chose for the LM, else off.")


def decoding_options(f):
    """Add --lm, --lm-weight and --lexicon/--no-lexicon to a command."""
    f = click.option("--lexicon/--no-lexicon", default=None, help=LEXICON_HELP)(f)
    f = click.option("--lm-weight", type=click.FloatRange(min=0), default=None, help=LM_WEIGHT_HELP)(f)
    return click.option("--lm", type=click.Path(exists=True, dir_okay=False, path_type=str), default=None,
                        help=LM_HELP)(f)


def _rate(x: float | None) -> str:
    return "–" if x is None else f"{x:.2%}"


def vietnamese_summary(v: dict) -> str:
    """One line of the Vietnamese error analysis: tone and vowel-mark error rates, đ/d, digits CER.

    Example: `tone errors 3.10% (hỏi→ngã 12) · vowel marks 1.05% · đ/d 2 · digits CER 1.20%`.
    """
    tones = v["tones"]
    top = tones["top_confusions"]
    tone_text = f"tone errors {_rate(tones['error_rate'])}"
    if top:
        tone_text += f" ({top[0]['ref']}→{top[0]['hyp']} {top[0]['count']})"
    return " · ".join([tone_text, f"vowel marks {_rate(v['vowel_diacritics']['error_rate'])}",
                       f"đ/d {v['d_stroke']['errors']}", f"digits CER {_rate(v['char_classes']['digit']['cer'])}"])


@click.command("evaluate")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(path_type=str),
              help="Model file from `vhrmodel train` (e.g. RUN/model.keras), an export folder, or `starter`.")
@click.option("--store", required=True, type=click.Path(path_type=str), help="Store to evaluate on.")
@click.option("--split", default="test", show_default=True, help="Split of the store.")
@click.option("--decoder", type=click.Choice(("greedy", "beam")), default="greedy", show_default=True)
@click.option("--beam-width", type=click.IntRange(min=1), default=None,
              help="Beams kept by --decoder beam [default: the width --lm was tuned at, else 10].")
@decoding_options
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str), help="Report folder.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--worst", type=click.IntRange(min=0), default=50, show_default=True,
              help="How many of the worst lines to write with their images.")
@handle_errors
def evaluate_cmd(model_path, store, split, decoder, beam_width, lm, lm_weight, lexicon, out, batch_size, worst):
    """Measure CER, WER, SER and diacritic-blind CER of a model on a store split.

    Writes OUT/metrics.json, OUT/metrics.md, OUT/predictions.jsonl and the worst lines as PNG
    crops with OUT/worst/index.md and OUT/worst/index.html (a page with each line's original
    image, the model input and a character diff of truth and prediction). --lm needs
    --decoder beam; --lexicon needs both. Tune --lm-weight on val (`vhrmodel tune-lm`), never
    on test.

    metrics.json ("vietnamese") and metrics.md also hold a Vietnamese error analysis:
    tone-mark and vowel-diacritic confusion matrices, đ read as d and d as đ, and CER on
    digits, letters, punctuation and spaces.

    Example:

    \b
        vhrmodel evaluate --model work/runs/small/model.keras --store work/store --split val --out work/eval
        vhrmodel evaluate --model work/run/model.keras --store work/store --split test --out work/eval-lex \\
            --decoder beam --lm work/run/charlm.json --lexicon
    """
    from vhrmodel.cli.checks import check_lm_decoder, check_model_path, check_out_folder, open_store_checked

    # Checked before Keras is imported: a mistake costs a second, not a TensorFlow start-up.
    check_lm_decoder(lm, decoder, lm_weight, lexicon)
    check_out_folder(out)
    check_model_path(model_path)
    open_store_checked(store, {split: "evaluation (--split)"})
    lm_model = load_lm(lm)

    from vhrmodel.evaluate import evaluate
    from vhrmodel.lm import resolve_lexicon

    with LazyProgress(f"evaluating {split}") as progress:
        m = evaluate(model_path, store, out, split=split, decoder=decoder, beam_width=beam_width, lm=lm_model,
                     lm_weight=lm_weight, lexicon=resolve_lexicon(lm_model, lexicon), batch_size=batch_size,
                     worst=worst, callback=progress)
    click.echo(f"{m['lines']} lines · CER {m['cer']:.2%} · WER {m['wer']:.2%} · SER {m['ser']:.2%} · "
               f"CER without diacritics {m['cer_no_diacritics']:.2%}")
    if m.get("vietnamese"):
        click.echo(vietnamese_summary(m["vietnamese"]))
    if m.get("lm"):
        click.echo(f"beam {m['beam_width']} · LM weight {m['lm_weight']:g} · lexicon {'on' if m.get('lexicon') else 'off'}")
    click.echo(f"wrote {out}/metrics.json, {out}/metrics.md and {out}/predictions.jsonl")
    click.echo(f"the worst lines, with images and a character diff: {out}/{WORST_DIR}/index.html")


COMMANDS = [evaluate_cmd]
