"""`vhrmodel serve`."""

from __future__ import annotations

import os

import click

from vhrdata.cli.common import handle_errors
from vhrmodel.cli.evaluate import decoding_options, load_lm


@click.command("serve")
@click.option("--model", "-m", "model_path", required=True, type=str,
              help="A .keras model file, an export folder (`vhrmodel export`), or 'starter'.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; a non-loopback one needs --token (or --insecure).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Most lines per model call (1 turns micro-batching off).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Longest wait for more lines after the first of a batch.")
@click.option("--max-queue", type=click.IntRange(min=1), default=256, show_default=True,
              help="Lines that may wait; more are answered 503 with Retry-After.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.001), default=10.0, show_default=True)
@click.option("--token", default=None, help="Require `Authorization: Bearer TOKEN` on the API (default: $VHR_TOKEN).")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without a token.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of an exported model's runtime.")
@click.option("--decoder", type=click.Choice(("greedy", "beam")), default="greedy", show_default=True)
@click.option("--beam-width", type=click.IntRange(min=1), default=None,
              help="Beams kept by --decoder beam [default: the width --lm was tuned at, else 10].")
@decoding_options
@handle_errors
def serve_cmd(model_path, host, port, max_batch, max_wait_ms, max_queue, max_upload_mb, token, insecure, threads,
              decoder, beam_width, lm, lm_weight, lexicon):
    """Serve a model over HTTP: a JSON API and a web page to upload or draw lines.

    POST /v1/recognize takes line images (multipart files, or one raw image body) and answers
    text, confidence, per-character confidences and x-ranges, and ms per line; GET /v1/model
    describes the model; GET /healthz; the page is at /, the OpenAPI schema at /openapi.json.
    Concurrent requests are batched into one model call (--max-batch, --max-wait-ms).

    Example:

    \b
        vhrmodel serve --model exports/demo-onnx --port 8000
        vhrmodel serve --model work/run/model.keras --decoder beam --lm work/run/charlm.json
        curl -F files=@line.png http://127.0.0.1:8000/v1/recognize
    """
    from vhrmodel.cli.checks import check_lm_decoder
    from vhrmodel.serve import check_bind

    check_lm_decoder(lm, decoder, lm_weight, lexicon)
    token = token or os.environ.get("VHR_TOKEN") or None
    check_bind(host, token, insecure)
    lm_model = load_lm(lm)
    from vhrmodel.extras import require

    require(["fastapi", "uvicorn", "multipart"], "serve", "`vhrmodel serve`")
    import uvicorn

    from vhrmodel.lm import resolve_lexicon
    from vhrmodel.predict import Recognizer
    from vhrmodel.runtime import open_runtime
    from vhrmodel.serve.app import ServeSettings, create_app

    if threads and os.path.isdir(model_path):
        from vhrmodel.export import open_exported

        runtime = open_exported(model_path, threads=threads)
    else:
        runtime = open_runtime(model_path)
    recognizer = Recognizer(runtime, decoder=decoder, beam_width=beam_width, lm=lm_model, lm_weight=lm_weight,
                            lexicon=resolve_lexicon(lm_model, lexicon))
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                             max_upload_mb=max_upload_mb, token=token)
    app = create_app(recognizer, settings, source=model_path)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"vhrmodel serve: {app.state.description['model_id']} on http://{shown}:{port}/ "
               f"({'token required' if token else 'no token'}; Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


COMMANDS = [serve_cmd]
