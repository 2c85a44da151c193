"""`vhrmodel predict`."""

from __future__ import annotations

import json

import click

from vhrdata.cli.common import handle_errors
from vhrmodel.cli.evaluate import load_lm


@click.command("predict")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(path_type=str),
              help="Model file from `vhrmodel train`.")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image with text, confidence and ms.")
@click.option("--decoder", type=click.Choice(("greedy", "beam")), default="greedy", show_default=True)
@click.option("--beam-width", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--lm", type=click.Path(exists=True, dir_okay=False, path_type=str), default=None,
              help="Character LM (JSON) for --decoder beam.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Lines per model call (ms per line is measured at this batch size).")
@click.option("--no-warm-up", is_flag=True, help="Count the first call's graph tracing in the first line's time.")
@handle_errors
def predict_cmd(model_path, images, as_json, decoder, beam_width, lm, batch_size, no_warm_up):
    """Print the text of each line image.

    With one image, prints its text; with several, `PATH<TAB>TEXT` per image. --json prints one
    object per image: {"path", "text", "confidence", "ms"}. Images are preprocessed with the
    settings stored in the model, exactly as its store was.

    Example:

    \b
        vhrmodel predict --model work/runs/small/model.keras line1.png line2.png --json
    """
    from vhrmodel.predict import Recognizer

    recognizer = Recognizer(model_path, decoder=decoder, beam_width=beam_width, lm=load_lm(lm))
    if not no_warm_up:
        recognizer.warm_up()
    for image, p in zip(images, recognizer.recognize(list(images), batch_size=batch_size)):
        if as_json:
            click.echo(json.dumps({"path": image, "text": p.text, "confidence": round(p.confidence, 5), "ms": p.ms},
                                  ensure_ascii=False))
        elif len(images) == 1:
            click.echo(p.text)
        else:
            click.echo(f"{image}\t{p.text}")


COMMANDS = [predict_cmd]
