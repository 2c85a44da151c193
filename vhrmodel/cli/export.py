"""`vhrmodel export`."""

from __future__ import annotations

import json

import click

from vhrdata.cli.common import handle_errors


@click.command("export")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(path_type=str),
              help="Model file from `vhrmodel train` (.keras).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Export folder (the artifact and vhr-model.json).")
@click.option("--format", "fmt", type=click.Choice(("saved_model", "litert", "onnx")), default="onnx",
              show_default=True)
@click.option("--quantize", type=click.Choice(("none", "dynamic", "int8")), default="none", show_default=True,
              help="dynamic: int8 weights (litert, onnx); int8: weights and activations, calibrated on --calibration (litert).")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=str), default=None,
              help="Store whose split gives the representative lines for --quantize int8.")
@click.option("--calibration-split", default="train", show_default=True)
@click.option("--calibration-lines", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Fixed batch of a LiteRT artifact (its converter needs one; widths stay free).")
@click.option("--force", is_flag=True, help="Replace an existing export in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@handle_errors
def export_cmd(model_path, out, fmt, quantize, calibration, calibration_split, calibration_lines, batch, force,
               as_json):
    """Export a trained model for LiteRT, ONNX Runtime or TensorFlow Serving.

    Writes the artifact and vhr-model.json (alphabet, preprocessing and its hash, input
    signature with the height fixed and the width free, format, quantisation, sha256 of the
    source model and of the artifact). `vhrmodel predict`, `vhrmodel serve` and
    `vhrmodel.predict.Recognizer` read the folder like a .keras file.

    Example:

    \b
        vhrmodel export --model runs/demo/model.keras --out exports/demo-onnx --format onnx
        vhrmodel export --model runs/demo/model.keras --out exports/demo-int8 --format litert \\
            --quantize int8 --calibration stores/demo
    """
    from vhrmodel.export import export_model

    info = export_model(model_path, out, format=fmt, quantize=quantize, calibration=calibration,
                        calibration_split=calibration_split, calibration_lines=calibration_lines, batch=batch,
                        overwrite=force)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
    else:
        click.echo(f"{info['path']}  {info['format']} ({info['quantization']}), {info['size_bytes'] / 1e6:.2f} MB, "
                   f"sha256 {info['artifact_sha256'][:16]}…, model id {info['model_id']}")


COMMANDS = [export_cmd]
