"""Evaluate a model file on a store split: `evaluate()` behind `vhrmodel evaluate`.

Writes into the output folder:

- `metrics.json`: CER, WER, SER, diacritic-blind CER, per-writer CER, timing, what was evaluated,
  and under "vietnamese" the error analysis of `vhrmodel.error_analysis` (tone-mark and
  vowel-diacritic confusion matrices, đ/d, CER per character class);
- `metrics.md`: the same as Markdown tables;
- `predictions.jsonl`: one object per line (id, writer, reference, hypothesis, errors, confidence);
- `worst/`: the worst lines (highest line CER): `NNN_<id>.png` (the model input) and
  `originals/NNN_<id>.png` (the source image, when the store's records still point at it), listed
  in `worst/index.md` and in `worst/index.html`, a page with a header (model, store, split,
  decoder, CER, WER, lines) and, per line, both images scaled to a readable size and the truth
  and prediction with substitutions, deletions and insertions marked.
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
from vhrmodel.error_analysis import vietnamese_error_analysis
from vhrmodel.metrics import bootstrap_cer_interval, edit_distance, evaluate_texts, normalize_text
from vhrmodel.predict import Recognizer

log = logging.getLogger(__name__)

WORST_DIR = "worst"


@dataclass(order=True)
class _Scored:
    key: tuple[float, int, int]
    line: dict[str, Any] = field(compare=False)
    image: np.ndarray = field(compare=False, repr=False)


def evaluate(
    model_path: str | Path,
    store_path: str | Path,
    out_dir: str | Path,
    *,
    split: str = "test",
    decoder: str = "greedy",
    beam_width: int | None = None,
    lm=None,
    lm_weight: float | None = None,
    lexicon=None,
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
        beam_width: beams kept by the beam decoder; None: the LM's tuned width, else 10.
        lm: optional `CharNgramLM` (trained on training labels only) for beam search.
        lm_weight, lexicon: passed to `vhrmodel.predict.Recognizer` (None: the LM's tuned weight;
            a `Lexicon` or True snaps address fields to unit names).
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
    recognizer = Recognizer(model_path, decoder=decoder, beam_width=beam_width, lm=lm, lm_weight=lm_weight,
                            lexicon=lexicon)
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
        beam_width=recognizer.beam_width if decoder == "beam" else None,
        lm=lm is not None,
        lm_weight=recognizer.lm_weight if lm is not None else None,
        lexicon=recognizer.snap.to_dict() if recognizer.lexicon is not None else None,
        params=int(recognizer.model.count_params()) if recognizer.model is not None else None,
        model_bytes=_model_bytes(model_path),
        batch_size=batch_size,
        ms_per_line_model=round(1000 * model_seconds / max(1, len(refs)), 3),
        ms_per_line_decode=round(1000 * decode_seconds / max(1, len(refs)), 3),
        seconds=round(total, 3),
        charset_size=len(charset),
        vietnamese=vietnamese_error_analysis(refs, hyps),
    )
    worst_lines = sorted(heap, reverse=True)
    _write_json(out_dir / "metrics.json", metrics)
    (out_dir / "metrics.md").write_text(metrics_markdown(metrics), encoding="utf-8")
    _write_worst(out_dir / WORST_DIR, worst_lines, metrics, store)
    return metrics


def _model_bytes(model_path) -> int | None:
    """Size of the model file (or export folder); "starter" is the shipped file."""
    from vhrmodel.starter import resolve_model

    path = resolve_model(model_path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else None


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    from vhrmodel.callbacks import write_run_json

    write_run_json(path, obj)


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def metrics_markdown(m: dict[str, Any]) -> str:
    """A Markdown report of `evaluate`'s metrics."""
    rows = [
        ("lines", m["lines"]),
        ("CER", _pct(m["cer"])),
        *([("CER 95 % bootstrap interval", f"{_pct(m['cer_ci95'][0])} – {_pct(m['cer_ci95'][1])}")]
          if m.get("cer_ci95") and None not in m["cer_ci95"] else []),
        ("WER", _pct(m["wer"])),
        ("SER (lines with any error)", _pct(m["ser"])),
        ("CER without diacritics", _pct(m["cer_no_diacritics"])),
        ("character errors / reference characters", f"{m['char_errors']} / {m['chars']}"),
        ("decoder", m["decoder"] + (f" (beam {m['beam_width']}{', LM' if m.get('lm') else ''}{', lexicon' if m.get('lexicon') else ''})" if m["decoder"] == "beam" else "")),
        ("model ms per line (batch %d)" % m["batch_size"], m["ms_per_line_model"]),
        ("decode ms per line", m["ms_per_line_decode"]),
        ("parameters", f"{m['params']:,}"),
        ("model file", f"{m['model_bytes'] / 1e6:.2f} MB" if m.get("model_bytes") is not None else "–"),
    ]
    out = [f"# Evaluation: {m['split']} split of {m['store']}", "", f"Model: `{m['model']}`", "",
           "| metric | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    per_writer = m.get("per_writer")
    if per_writer:
        out += ["", "## Per writer", "", "| writer | lines | CER |", "|---|---|---|"]
        for writer, w in sorted(per_writer.items(), key=lambda kv: -kv[1].get("cer", 0)):
            out.append(f"| {writer} | {w.get('lines', '')} | {_pct(w.get('cer', 0.0))} |")
    if m.get("vietnamese"):
        out += ["", *vietnamese_markdown(m["vietnamese"])]
    out += ["", f"The worst lines are in [{WORST_DIR}/index.md]({WORST_DIR}/index.md), and with the original "
            f"images and a character diff in [{WORST_DIR}/index.html]({WORST_DIR}/index.html).", ""]
    return "\n".join(out)


_TONE_LABELS = {"ngang": "ngang (a)", "huyền": "huyền (à)", "sắc": "sắc (á)", "hỏi": "hỏi (ả)", "ngã": "ngã (ã)",
                "nặng": "nặng (ạ)"}
_DIACRITIC_LABELS = {"none": "none (a e o u)", "circumflex": "circumflex (â ê ô)", "breve": "breve (ă)",
                     "horn": "horn (ơ ư)"}
_CLASS_LABELS = {"digit": "digits", "letter": "letters", "punctuation": "punctuation and symbols",
                 "space": "spaces", "other": "other"}


def _rate_text(x: float | None) -> str:
    return "–" if x is None else _pct(x)


def _confusion_markdown(title: str, part: dict[str, Any], names: dict[str, str], what: str) -> list[str]:
    """A ref × hyp confusion matrix of `vietnamese_error_analysis` as a Markdown table and a summary."""
    labels = part["labels"]
    out = [f"### {title}", "", "| reference \\ read as | " + " | ".join(names.get(x, x) for x in labels) + " |",
           "|---|" + "---:|" * len(labels)]
    for label, row in zip(labels, part["matrix"]):
        out.append(f"| {names.get(label, label)} | " + " | ".join(str(n) for n in row) + " |")
    top = ", ".join(f"{c['ref']} → {c['hyp']} {c['count']}" for c in part["top_confusions"]) or "none"
    out += ["", f"{what} error rate {_rate_text(part['error_rate'])} ({part['errors']} of {part['pairs']} aligned "
                f"vowels of the same base letter): {part['dropped']} dropped, {part['added']} added, "
                f"{part['changed']} changed. Most confused: {top}.", ""]
    return out


def vietnamese_markdown(v: dict[str, Any]) -> list[str]:
    """Markdown lines for the "vietnamese" section of `evaluate`'s metrics (see `vhrmodel.error_analysis`)."""
    out = ["## Vietnamese error analysis", "",
           "Truth and prediction are aligned character by character; a vowel counts in the matrices when the "
           "prediction has a vowel of the same base letter in its place (rows: truth, columns: prediction).", ""]
    out += _confusion_markdown("Tone marks", v["tones"], _TONE_LABELS, "Tone")
    out += _confusion_markdown("Vowel diacritics", v["vowel_diacritics"], _DIACRITIC_LABELS, "Vowel-diacritic")
    d = v["d_stroke"]
    out += ["### đ and d", "", "| reference \\ read as | d | đ |", "|---|---:|---:|"]
    out += [f"| {label} | {row[0]} | {row[1]} |" for label, row in zip(d["labels"], d["matrix"])]
    out += ["", f"đ read as d: {d['stroke_d_as_d']}; d read as đ: {d['d_as_stroke_d']} "
                f"(error rate {_rate_text(d['error_rate'])} of {d['pairs']} aligned d/đ).", ""]
    out += ["### CER per character class", "",
            "| class | reference chars | errors | substitutions | deletions | insertions | CER |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in v["char_classes"].items():
        if name == "other" and not (c["chars"] or c["errors"]):
            continue
        out.append(f"| {_CLASS_LABELS.get(name, name)} | {c['chars']} | {c['errors']} | {c['substitutions']} | "
                   f"{c['deletions']} | {c['insertions']} | {_rate_text(c['cer'])} |")
    out += ["", "A class's errors are substitutions and deletions of its reference characters plus insertions of "
                "its characters; CER is errors / reference characters (– when the class has none)."]
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_IMAGE_SUFFIX = re.compile(r"\.(png|jpe?g|tiff?|bmp|webp|gif|pp?m|pgm|jp2)$", re.I)
# Display sizes of the worst page: model inputs are drawn at least this tall, originals this tall.
MODEL_INPUT_MIN_PX = 96
ORIGINAL_PX = 96
ORIGINAL_MAX_PIXELS = (2400, 600)  # originals are written downscaled to fit this box
ORIGINALS_DIR = "originals"


def _file_stem(rank: int, line_id: str) -> str:
    """`001_val_w012_22` for rank 1 and id "val/w012_22.jpg": ASCII, no image suffix, no dots."""
    import unicodedata

    from vhrdata.text import strip_diacritics

    base = _IMAGE_SUFFIX.sub("", str(line_id))
    base = unicodedata.normalize("NFKD", strip_diacritics(base)).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^0-9A-Za-z_-]+", "_", base).strip("_")[:60].strip("_") or "line"
    return f"{rank:03d}_{base}"


def _original_paths(store, ids: list[str]) -> dict[str, str]:
    """Source image path of each id, from the store's records.parquet when it is still there."""
    records = ((getattr(store, "index", None) or {}).get("build") or {}).get("records")
    if not records or not ids:
        return {}
    try:
        from vhrdata.records import read_records

        df = read_records(records)
    except Exception as ex:  # a moved or rewritten records folder only costs the original images
        log.info("worst page without original images: %s", ex)
        return {}
    if "id" not in df.columns or "path" not in df.columns:
        return {}
    wanted = set(ids)
    rows = df[df["id"].isin(wanted)]
    return {str(i): str(p) for i, p in zip(rows["id"], rows["path"])}


def _write_original(source: str, target: Path) -> tuple[int, int] | None:
    """The source image as a PNG (EXIF-upright, RGB, downscaled to fit); its (width, height), or None."""
    try:
        from PIL import Image, ImageOps

        with Image.open(source) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("RGB", "L"):
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            im.thumbnail(ORIGINAL_MAX_PIXELS)
            im.save(target, format="PNG")
            return im.size
    except Exception as ex:  # the page shows the model input alone
        log.info("cannot show the original of %s: %s", source, ex)
        return None


_OP_CLASS = {"substitute": "sub", "delete": "del", "insert": "ins"}
_OP_TITLE = {"substitute": "substituted", "delete": "missing from the prediction", "insert": "inserted"}


def _diff_html(ref: str, hyp: str) -> tuple[str, str]:
    """(truth, prediction) as HTML, with the characters of a minimal edit alignment marked.

    In the truth, substituted characters and those the prediction lacks are marked; in the
    prediction, substituted and inserted ones, plus a caret where a truth character is missing.
    """
    from vhrmodel.metrics import align

    def span(op: str, ch: str, title: str) -> str:
        return f'<span class="{_OP_CLASS[op]}" title="{html.escape(title, quote=True)}">{html.escape(ch)}</span>'

    truth, pred = [], []
    for op, r, h in align(ref, hyp):
        if op == "equal":
            truth.append(html.escape(r))
            pred.append(html.escape(h))
        elif op == "substitute":
            truth.append(span(op, r, f"read as {h!r}"))
            pred.append(span(op, h, f"should be {r!r}"))
        elif op == "delete":
            truth.append(span(op, r, "missing from the prediction"))
            pred.append(f'<span class="gap" title="{html.escape(f"missing {r!r}", quote=True)}"></span>')
        else:
            pred.append(span(op, h, "not in the truth"))
    return "".join(truth), "".join(pred)


_PAGE_CSS = """
:root { --sub: #ffd166; --del: #ef476f; --ins: #4cc9f0; --ink: #1d2330; --muted: #5c6475; --line: #dde1e8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "DejaVu Sans", sans-serif;
       color: var(--ink); background: #f5f6f8; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 18px 28px; }
h1 { font-size: 22px; margin: 0 0 10px; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
.meta dt { color: var(--muted); }
.meta dd { margin: 0; overflow-wrap: anywhere; }
.meta code { font-size: 13px; }
.figures { display: flex; gap: 12px; flex-wrap: wrap; margin: 14px 0 8px; }
.figure { background: #f0f2f6; border-radius: 8px; padding: 8px 14px; min-width: 110px; }
.figure b { display: block; font-size: 22px; }
.figure span { color: var(--muted); font-size: 13px; }
.legend { color: var(--muted); font-size: 13px; }
main { padding: 18px 28px 40px; max-width: 1400px; }
.empty { font-size: 17px; }
article { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 18px; margin: 0 0 16px; }
article h2 { font-size: 15px; font-weight: 600; margin: 0 0 10px; display: flex; flex-wrap: wrap; gap: 4px 16px; }
article h2 .rank { color: var(--muted); }
article h2 .id { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-weight: 400; overflow-wrap: anywhere; }
.images { display: flex; flex-wrap: wrap; gap: 6px 24px; align-items: flex-end; margin: 0 0 10px; }
figure { margin: 0; max-width: 100%; }
figcaption { color: var(--muted); font-size: 12px; margin-bottom: 3px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
img.input { image-rendering: pixelated; image-rendering: crisp-edges; }
.texts { display: grid; grid-template-columns: 88px 1fr; gap: 4px 12px; align-items: baseline; }
.texts .label { color: var(--muted); font-size: 13px; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 22px; line-height: 1.5; }
.sub, .del, .ins { border-radius: 3px; box-shadow: inset 0 0 0 1px rgba(0, 0, 0, .18); padding: 0 1px; }
.sub { background: var(--sub); }
.del { background: var(--del); color: #fff; text-decoration: line-through; }
.ins { background: var(--ins); text-decoration: underline; }
.gap { display: inline-block; width: 3px; height: 1.1em; background: var(--del); vertical-align: -0.15em; margin: 0 1px; }
.key { display: inline-block; padding: 0 5px; border-radius: 3px; margin-right: 2px; }
"""


def _header_html(metrics: dict[str, Any] | None, shown: int) -> str:
    if not metrics:
        return "<header><h1>Worst lines</h1></header>"
    decoder = metrics.get("decoder", "")
    if decoder == "beam":
        decoder += f" (width {metrics.get('beam_width')}{', character LM' if metrics.get('lm') else ''})"
    ci = metrics.get("cer_ci95")
    ci_text = f"95 % interval {_pct(ci[0])} – {_pct(ci[1])}" if ci and None not in ci else "corpus CER"
    rows = [("model", metrics.get("model")), ("store", metrics.get("store")), ("split", metrics.get("split")),
            ("decoder", decoder)]
    meta = "".join(f"<dt>{k}</dt><dd><code>{html.escape(str(v))}</code></dd>" for k, v in rows if v is not None)
    figures = [
        (_pct(metrics["cer"]), f"CER · {ci_text}"),
        (_pct(metrics["wer"]), "WER"),
        (_pct(metrics["ser"]) if "ser" in metrics else "–", "lines with an error"),
        (f"{metrics.get('lines', 0):,}", "lines evaluated"),
        (f"{shown:,}", "worst lines shown"),
    ]
    figs = "".join(f'<div class="figure"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>' for v, k in figures)
    legend = ('<p class="legend">Marked characters: <span class="key sub">substituted</span> '
              '<span class="key del">missing from the prediction</span> '
              '<span class="key ins">inserted by the model</span>; a red bar in the prediction is where a '
              'character is missing. Truth and prediction are compared after normalisation (NFC, single spaces). '
              "Sorted by line CER, worst first.</p>")
    return f"<header><h1>Worst lines</h1><dl class=\"meta\">{meta}</dl><div class=\"figures\">{figs}</div>{legend}</header>"


def _write_worst(folder: Path, worst: list[_Scored], metrics: dict[str, Any] | None = None, store=None) -> None:
    """Write the worst lines: PNGs, `index.md` and a styled `index.html` with a character diff.

    Files are `NNN_<id>.png` (the model input) and `originals/NNN_<id>.png` (the source image,
    upright and downscaled, when the store's records.parquet still points at it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*.png"), *(folder / ORIGINALS_DIR).glob("*.png")]:
        old.unlink()
    originals = _original_paths(store, [str(item.line["id"]) for item in worst]) if store is not None else {}
    md = ["# Worst lines", "", "| # | line CER | errors | id | image, reference, prediction |", "|---|---|---|---|---|"]
    articles = []
    for rank, item in enumerate(worst, 1):
        line = item.line
        stem = _file_stem(rank, str(line["id"]))
        name = f"{stem}.png"
        cv2.imwrite(str(folder / name), item.image)
        h, w = item.image.shape[:2]
        scale = max(1, -(-MODEL_INPUT_MIN_PX // max(1, h)))  # whole pixels: crisp, not blurred
        figures = []
        source = originals.get(str(line["id"]))
        if source is not None:
            (folder / ORIGINALS_DIR).mkdir(exist_ok=True)
            size = _write_original(source, folder / ORIGINALS_DIR / name)
            if size is not None:
                ow, oh = size
                shown_w = max(1, round(ow * ORIGINAL_PX / max(1, oh)))
                figures.append(
                    f'<figure><figcaption>original ({html.escape(Path(source).name)}, {ow}×{oh} px)</figcaption>'
                    f'<img class="original" src="{ORIGINALS_DIR}/{html.escape(name)}" width="{shown_w}" '
                    f'height="{ORIGINAL_PX}" alt="original of line {rank}"></figure>'
                )
        figures.append(
            f'<figure><figcaption>model input ({w}×{h} px, shown ×{scale})</figcaption>'
            f'<img class="input" src="{html.escape(name)}" width="{w * scale}" height="{h * scale}" '
            f'alt="model input of line {rank}"></figure>'
        )
        truth, pred = _diff_html(line["reference"], line["prediction"])
        writer = line.get("writer")
        heading = (f'<span class="rank">#{rank}</span><span>line CER {_pct(line["cer"])}</span>'
                   f'<span>{line["char_errors"]} character error{"s" if line["char_errors"] != 1 else ""}</span>'
                   + (f'<span>confidence {float(line["confidence"]):.2f}</span>' if line.get("confidence") is not None else "")
                   + (f"<span>writer {html.escape(str(writer))}</span>" if writer is not None else "")
                   + f'<span class="id">{html.escape(str(line["id"]))}</span>')
        articles.append(
            f'<article id="line-{rank}"><h2>{heading}</h2><div class="images">{"".join(figures)}</div>'
            f'<div class="texts"><span class="label">truth</span><div class="text truth">{truth}</div>'
            f'<span class="label">prediction</span><div class="text prediction">{pred}</div></div></article>'
        )
        md.append(
            f"| {rank} | {_pct(line['cer'])} | {line['char_errors']} | {_md_cell(str(line['id']))} | "
            f"![{rank}]({name})<br>ref: {_md_cell(line['reference'])}<br>hyp: {_md_cell(line['prediction'])} |"
        )
    if not worst:
        md.append("| | | | | no line has an error |")
    if metrics:
        md += ["", f"{metrics.get('split')} split of `{metrics.get('store')}`, model `{metrics.get('model')}`, "
                   f"{metrics.get('decoder')} decoder: CER {_pct(metrics['cer'])}, WER {_pct(metrics['wer'])}, "
                   f"{metrics.get('lines')} lines. With the original images and a character diff: "
                   "[index.html](index.html)."]
    if not worst:
        articles.append('<p class="empty">No line has an error.</p>')
    (folder / "index.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    title = "Worst lines"
    if metrics:
        title += f" · {metrics.get('split')} · CER {_pct(metrics['cer'])}"
    page = (
        '<!DOCTYPE html>\n<html lang="vi"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_PAGE_CSS}</style></head><body>"
        + _header_html(metrics, len(worst))
        + "<main>" + "".join(articles) + "</main></body></html>\n"
    )
    (folder / "index.html").write_text(page, encoding="utf-8")
