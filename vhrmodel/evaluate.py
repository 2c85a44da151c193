"""Evaluate a model file on a store split: `evaluate()` behind `vhrmodel evaluate`.

Writes into the output folder:

- `metrics.json`: CER, WER, SER, diacritic-blind CER, per-writer CER, timing, what was evaluated;
- `metrics.md`: the same as a Markdown table;
- `predictions.jsonl`: one object per line (id, writer, reference, hypothesis, errors, confidence);
- `worst/`: the worst lines (highest line CER) as PNG crops of the model input, listed in
  `worst/index.md` and `worst/index.html` with reference and prediction.
"""

from __future__ import annotations

import heapq
import html
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from vhrdata.errors import StoreError
from vhrmodel.metrics import bootstrap_cer_interval, edit_distance, evaluate_texts, normalize_text
from vhrmodel.predict import Recognizer

log = logging.getLogger(__name__)

WORST_DIR = "worst"


@dataclass(order=True)
class _Scored:
    key: tuple[float, int, int]
    line: dict[str, Any] = field(compare=False)
    image: np.ndarray = field(compare=False, repr=False)


def _safe_name(text: str, limit: int = 60) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", text)[:limit].strip("_") or "line"


def evaluate(
    model_path: str | Path,
    store_path: str | Path,
    out_dir: str | Path,
    *,
    split: str = "test",
    decoder: str = "greedy",
    beam_width: int = 10,
    lm=None,
    batch_size: int = 16,
    worst: int = 50,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Decode every line of a store split and write metrics and the worst lines; returns metrics.

    Args:
        model_path: a model file from `vhrmodel train`.
        store_path: the store to evaluate on; its preprocessing must be the model's.
        out_dir: where to write (created).
        split: the split to evaluate.
        decoder: "greedy" or "beam".
        beam_width: beams kept by the beam decoder.
        lm: optional `CharNgramLM` (trained on training labels only) for beam search.
        batch_size: lines per model call.
        worst: how many of the worst lines to write out.
        callback: called as callback(done, total) with line counts after each batch.

    Raises:
        StoreError: the store is missing, has no such split, or was preprocessed differently.
        ModelFileError: the model file is unusable.
    """
    from vhrdata.store import open_store
    from vhrmodel.inputs import split_counts

    store = open_store(store_path)
    counts = split_counts(store)
    if not counts.get(split):
        raise StoreError(f"store {store_path} has no {split!r} lines (splits: {counts}); choose another --split")
    recognizer = Recognizer(model_path, decoder=decoder, beam_width=beam_width, lm=lm)
    settings = recognizer.settings
    if settings != store.settings:
        raise StoreError(
            f"store {store_path} was preprocessed differently from the model's training data "
            f"({'; '.join(settings.diff(store.settings))}); rebuild the store with the model's settings"
        )
    store_downsample = (store.index.get("build") or {}).get("downsample")
    if store_downsample is not None and int(store_downsample) != recognizer.downsample:
        raise StoreError(
            f"store {store_path} checked CTC feasibility for downsample {store_downsample}, the model downsamples by "
            f"{recognizer.downsample}; rebuild the store with `vhrdata build-lmdb --downsample {recognizer.downsample}`"
        )
    charset = recognizer.charset
    ds = store.split(split)
    # Batches carry no writer; one scan of the split maps ids to writers for per-writer CER.
    writer_of = {sample.id: sample.writer for sample in ds}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    refs, hyps, writers, lines = [], [], [], []
    heap: list[_Scored] = []
    model_seconds = decode_seconds = 0.0
    started = time.perf_counter()
    with (out_dir / "predictions.jsonl").open("w", encoding="utf-8") as pred_file:
        for b in ds.batches(batch_size=batch_size, shuffle=False):
            t0 = time.perf_counter()
            images = [b.images[i, :, : int(b.widths[i])] for i in range(len(b.texts))]
            logits, lengths = recognizer.logits(images)
            t1 = time.perf_counter()
            texts, confs = recognizer.decode(logits, lengths)
            t2 = time.perf_counter()
            model_seconds += t1 - t0
            decode_seconds += t2 - t1
            batch_writers = [writer_of.get(i) for i in b.ids]
            for i, (ref, hyp, conf) in enumerate(zip(b.texts, texts, confs)):
                ref, hyp = normalize_text(ref), normalize_text(hyp)
                errors = edit_distance(ref, hyp)
                line = {
                    "id": b.ids[i],
                    "writer": batch_writers[i],
                    "reference": ref,
                    "prediction": hyp,
                    "char_errors": errors,
                    "cer": errors / max(1, len(ref)),
                    "confidence": round(float(conf), 5),
                }
                pred_file.write(json.dumps(line, ensure_ascii=False) + "\n")
                refs.append(ref)
                hyps.append(hyp)
                writers.append(batch_writers[i])
                lines.append(line)
                if worst and errors:
                    item = _Scored((line["cer"], errors, -len(lines)), line, images[i].copy())
                    if len(heap) < worst:
                        heapq.heappush(heap, item)
                    elif item > heap[0]:
                        heapq.heapreplace(heap, item)
            if callback is not None:
                callback(len(refs), len(ds))
    total = time.perf_counter() - started

    has_writers = any(w is not None for w in writers)
    metrics = evaluate_texts(refs, hyps, writers if has_writers else None)
    low, high = bootstrap_cer_interval(refs, hyps)
    unknown = sorted({c for r in refs for c in r if c not in charset})
    metrics.update(
        cer_ci95=[low, high],
        chars_outside_charset="".join(unknown),
        lines_with_chars_outside_charset=sum(any(c not in charset for c in r) for r in refs),
        model=str(model_path),
        store=str(store_path),
        split=split,
        decoder=decoder,
        beam_width=beam_width if decoder == "beam" else None,
        lm=lm is not None,
        params=int(recognizer.model.count_params()) if recognizer.model is not None else None,
        model_bytes=Path(model_path).stat().st_size,
        batch_size=batch_size,
        ms_per_line_model=round(1000 * model_seconds / max(1, len(refs)), 3),
        ms_per_line_decode=round(1000 * decode_seconds / max(1, len(refs)), 3),
        seconds=round(total, 3),
        charset_size=len(charset),
    )
    worst_lines = sorted(heap, reverse=True)
    _write_json(out_dir / "metrics.json", metrics)
    (out_dir / "metrics.md").write_text(metrics_markdown(metrics), encoding="utf-8")
    _write_worst(out_dir / WORST_DIR, worst_lines)
    return metrics


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    from vhrmodel.callbacks import write_json_atomic

    write_json_atomic(path, obj)


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def metrics_markdown(m: dict[str, Any]) -> str:
    """A Markdown report of `evaluate`'s metrics."""
    rows = [
        ("lines", m["lines"]),
        ("CER", _pct(m["cer"])),
        ("WER", _pct(m["wer"])),
        ("SER (lines with any error)", _pct(m["ser"])),
        ("CER without diacritics", _pct(m["cer_no_diacritics"])),
        ("character errors / reference characters", f"{m['char_errors']} / {m['chars']}"),
        ("decoder", m["decoder"] + (f" (beam {m['beam_width']}{', LM' if m.get('lm') else ''})" if m["decoder"] == "beam" else "")),
        ("model ms per line (batch %d)" % m["batch_size"], m["ms_per_line_model"]),
        ("decode ms per line", m["ms_per_line_decode"]),
        ("parameters", f"{m['params']:,}"),
        ("model file", f"{m['model_bytes'] / 1e6:.2f} MB"),
    ]
    out = [f"# Evaluation: {m['split']} split of {m['store']}", "", f"Model: `{m['model']}`", "",
           "| metric | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    per_writer = m.get("per_writer")
    if per_writer:
        out += ["", "## Per writer", "", "| writer | lines | CER |", "|---|---|---|"]
        for writer, w in sorted(per_writer.items(), key=lambda kv: -kv[1].get("cer", 0)):
            out.append(f"| {writer} | {w.get('lines', '')} | {_pct(w.get('cer', 0.0))} |")
    out += ["", f"The worst lines are in [{WORST_DIR}/index.md]({WORST_DIR}/index.md).", ""]
    return "\n".join(out)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _write_worst(folder: Path, worst: list[_Scored]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    md = ["# Worst lines", "", "| # | line CER | errors | id | image, reference, prediction |", "|---|---|---|---|---|"]
    rows_html = []
    for rank, item in enumerate(worst, 1):
        line = item.line
        name = f"{rank:03d}_{_safe_name(str(line['id']))}.png"
        cv2.imwrite(str(folder / name), item.image)
        md.append(
            f"| {rank} | {_pct(line['cer'])} | {line['char_errors']} | {_md_cell(str(line['id']))} | "
            f"![{rank}]({name})<br>ref: {_md_cell(line['reference'])}<br>hyp: {_md_cell(line['prediction'])} |"
        )
        rows_html.append(
            f"<tr><td>{rank}</td><td>{_pct(line['cer'])}</td><td>{line['char_errors']}</td>"
            f"<td>{html.escape(str(line['id']))}</td><td><img src=\"{html.escape(name)}\"><br>"
            f"<b>ref</b> {html.escape(line['reference'])}<br><b>hyp</b> {html.escape(line['prediction'])}</td></tr>"
        )
    if not worst:
        md.append("| | | | | no line has an error |")
    (folder / "index.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    page = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Worst lines</title>"
        "<style>body{font-family:sans-serif}td{border-bottom:1px solid #ccc;padding:4px;vertical-align:top}"
        "img{max-width:100%}</style></head><body><h1>Worst lines</h1><table>"
        "<tr><th>#</th><th>line CER</th><th>errors</th><th>id</th><th>image, reference, prediction</th></tr>"
        + "".join(rows_html)
        + "</table></body></html>\n"
    )
    (folder / "index.html").write_text(page, encoding="utf-8")
