"""Write a synthetic dataset in the kalapa or the IAM layout, rendering on several processes.

Layouts (exactly what `vhrdata ingest` reads):

- kalapa: `OUT/images/<writer>/<n>.jpg` and `OUT/annotations/<writer>.txt`, each line
  `<writer>/<n>.jpg<TAB><text>` (path relative to `images/`).
- iam: `OUT/lines.txt` (`<id> ok <gray> <components> <x> <y> <w> <h> <words|joined|by|bars>`),
  `OUT/forms.txt` (`<form> <writer> ...`) and `OUT/lines/<s00>/<s00-000>/<s00-000-00>.png`.
  As in IAM, pixels lighter than the gray level are set to white.

Both layouts also get `OUT/synth.json`, which records the settings, fonts and writers. Every line's
text and image depend only on (seed, line index, its writer), so the output is the same whatever
the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from vhrdata import __version__
from vhrdata.errors import SynthError
from vhrdata.synth.addresses import generate_texts
from vhrdata.synth.camera import SYNTH_CAMERA, CameraRanges
from vhrdata.synth.fontsource import FONT_SELECTIONS, resolve_fonts
from vhrdata.synth.render import CAPTURES, DEFAULT_HEIGHT, WriterStyle, make_writers, render_line
from vhrdata.synth.seeding import CAPTURE_STREAM, LAYOUT_STREAM, RENDER_STREAM, check_seed, line_rng
from vhrdata.workers import process_context

logger = logging.getLogger(__name__)

LAYOUTS = ("kalapa", "iam")
MANIFEST = "synth.json"
SCHEMA_VERSION = 2
#: Share of camera lines under capture="mix".
MIX_CAMERA_SHARE = 0.5
# Everything synth may write; an --overwrite run removes these (and only these) first.
_OWNED = ("images", "annotations", "lines", "lines.txt", "forms.txt", MANIFEST)


def default_workers() -> int:
    """Worker processes used when none are asked for: the usable CPUs, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


@dataclass(frozen=True)
class _Job:
    """One line to render: its global index, text, writer and path relative to OUT."""

    index: int
    text: str
    writer: int
    path: str
    capture: str = "scanner"


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SynthError(f"Output {out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SynthError(f"Output folder {out} is not empty. Choose an empty folder or pass --overwrite.")
        if not (out / MANIFEST).is_file():
            raise SynthError(
                f"Output folder {out} is not empty and was not made by `vhrdata synth` (no {MANIFEST}); "
                "refusing to overwrite it. Choose an empty folder."
            )
        for name in _OWNED:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        left = sorted(p.name for p in out.iterdir())
        if left:
            logger.warning("kept files that synth did not write in %s: %s", out, ", ".join(left[:10]))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise SynthError(f"Cannot create output folder {out}: {ex.strerror or ex}") from None


def _writer_blocks(lines: int, writers: int) -> list[range]:
    """Contiguous, near-equal blocks of line indices, one per writer."""
    bounds = [w * lines // writers for w in range(writers + 1)]
    return [range(bounds[w], bounds[w + 1]) for w in range(writers)]


def line_captures(lines: int, seed: int, capture: str) -> list[str]:
    """The capture of each line: all "scanner", all "camera", or per line under "mix"."""
    if capture != "mix":
        return [capture] * lines
    return ["camera" if line_rng(seed, CAPTURE_STREAM, i).random() < MIX_CAMERA_SHARE else "scanner"
            for i in range(lines)]


def _plan_kalapa(texts: list[str], styles: list[WriterStyle]) -> list[_Job]:
    jobs = []
    for w, block in enumerate(_writer_blocks(len(texts), len(styles))):
        for n, i in enumerate(block):
            jobs.append(_Job(i, texts[i], w, f"images/{styles[w].name}/{n}.jpg"))
    return jobs


def _iam_form_id(k: int) -> str:
    return f"s{k // 100:02d}-{k:03d}"


def _plan_iam(texts: list[str], styles: list[WriterStyle], lines_per_form: int) -> tuple[list[_Job], list[tuple]]:
    """Jobs plus the forms as (form id, writer index, [line indices])."""
    jobs, forms = [], []
    for w, block in enumerate(_writer_blocks(len(texts), len(styles))):
        n_forms = max(1, math.ceil(len(block) / lines_per_form)) if len(block) else 0
        bounds = [block.start + f * len(block) // n_forms for f in range(n_forms + 1)]
        for f in range(n_forms):
            form = _iam_form_id(len(forms))
            indices = list(range(bounds[f], bounds[f + 1]))
            forms.append((form, w, indices))
            for j, i in enumerate(indices):
                line_id = f"{form}-{j:02d}"
                jobs.append(_Job(i, texts[i], w, f"lines/{form.split('-')[0]}/{form}/{line_id}.png"))
    return jobs, forms


# Worker state, set once per process by _init_worker.
_STATE: dict = {}


def _init_worker(out: str, styles: list[WriterStyle], seed: int, layout: str, jpeg_quality: int,
                 camera: CameraRanges = SYNTH_CAMERA) -> None:
    # Parallelism comes from processes; OpenCV's own threads would only oversubscribe the cores.
    cv2.setNumThreads(1)
    _STATE.update(out=Path(out), styles=styles, seed=seed, layout=layout, jpeg_quality=jpeg_quality, camera=camera)


def _render_job(job: _Job) -> tuple:
    """Render and write one line; return (index, height, width, gray level, components)."""
    writer = _STATE["styles"][job.writer]
    image = render_line(job.text, writer, line_rng(_STATE["seed"], RENDER_STREAM, job.index),
                        capture=job.capture, camera=_STATE["camera"])
    path = _STATE["out"] / job.path
    path.parent.mkdir(parents=True, exist_ok=True)
    gray, components = 0, 0
    if _STATE["layout"] == "iam":
        gray, _ = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        gray = int(gray)
        image[image > gray] = 255
        components = cv2.connectedComponents((image <= gray).astype(np.uint8), connectivity=8)[0] - 1
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    else:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _STATE["jpeg_quality"]])
    if not ok:  # pragma: no cover - OpenCV encoders do not fail on uint8 images
        raise SynthError(f"Could not encode {path}")
    path.write_bytes(data.tobytes())
    return job.index, image.shape[0], image.shape[1], gray, int(components)


def _render_chunk(jobs: list[_Job]) -> list[tuple]:
    return [_render_job(job) for job in jobs]


def _run(jobs: list[_Job], workers: int, initargs: tuple, callback) -> dict[int, tuple]:
    results: dict[int, tuple] = {}
    total = len(jobs)
    # Small chunks keep the progress bar moving and the load balanced; large ones cut overhead.
    chunk = max(1, min(32, math.ceil(total / (workers * 4))))
    chunks = [jobs[i:i + chunk] for i in range(0, total, chunk)]
    workers = min(workers, len(chunks))

    def collect(piece: list[tuple]) -> None:
        for row in piece:
            results[row[0]] = row
        if callback is not None:
            callback(len(results), total)

    threads = cv2.getNumThreads()
    try:
        if workers <= 1:
            _init_worker(*initargs)
            for c in chunks:
                collect(_render_chunk(c))
            return results
        # A process pool that breaks (a worker killed, or unable to start) raises instead of hanging.
        with ProcessPoolExecutor(workers, mp_context=process_context(preload=["vhrdata.synth.generate"]), initializer=_init_worker,
                                 initargs=initargs) as pool:
            futures = [pool.submit(_render_chunk, c) for c in chunks]
            try:
                for future in as_completed(futures):
                    collect(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    except BrokenProcessPool as ex:
        raise SynthError(
            f"A synth worker process died ({ex}). If synthesize() runs from a script, put the call under "
            "`if __name__ == \"__main__\":`, or use workers=1."
        ) from None
    finally:
        cv2.setNumThreads(threads)
    return results


def synthesize(
    out: str | os.PathLike,
    lines: int = 1000,
    writers: int = 10,
    seed: int = 0,
    layout: str = "kalapa",
    workers: int | None = None,
    callback: Callable[[int, int], None] | None = None,
    *,
    height: int = DEFAULT_HEIGHT,
    fonts: str | Sequence[str | os.PathLike] | None = None,
    font_dirs: Sequence[str | os.PathLike] = (),
    capture: str = "scanner",
    camera: CameraRanges = SYNTH_CAMERA,
    lines_per_form: int = 8,
    jpeg_quality: int = 90,
    overwrite: bool = False,
) -> dict:
    """Generate a synthetic handwriting dataset of Vietnamese address lines.

    Args:
        out: output folder; must be empty or absent (see `overwrite`).
        lines: number of text lines.
        writers: number of synthetic writers; lines are shared out among them in contiguous blocks.
        seed: a non-negative integer; same seed and fonts give the same files.
        layout: "kalapa" (JPEG + annotations/<writer>.txt) or "iam" (PNG + lines.txt + forms.txt).
        workers: processes to render with; default `default_workers()`. Does not change the output.
        callback: called as callback(done, total) as lines are written.
        height: nominal image height in pixels.
        fonts: "train" (default: the cached Fontsource handwriting faces but `HELD_OUT_FACES`),
            "held-out" (only those, for the test-unseen-font set), "all", or a list of font files.
            Without cached faces (`make fonts`) it falls back to the system fonts, logs a warning
            and records it in synth.json (`fonts.source`, `fonts.warning`).
        font_dirs: extra folders of fonts, added to the chosen ones.
        capture: "scanner" (white paper), "camera" (phone photo, see `vhrdata.synth.camera`) or
            "mix" (half and half, chosen per line).
        camera: the camera effect ranges (e.g. `TEST_CAMERA` for an evaluation set).
        lines_per_form: most lines on one IAM form (iam layout).
        jpeg_quality: JPEG quality (kalapa layout).
        overwrite: replace the output of an earlier synth run in `out` (only a folder holding synth.json).

    Returns:
        Summary dict: out, layout, lines, writers, forms, seed, workers, fonts, font_source,
        font_warning, captures (counts), seconds, lines_per_s.

    Raises:
        SynthError: no usable font, or `out` is not empty and may not be overwritten.
        ValueError: a bad argument.

    Example:
        >>> summary = synthesize("/tmp/synth-demo", lines=8, writers=2, seed=0, workers=1)  # doctest: +SKIP
        >>> summary["lines"]  # doctest: +SKIP
        8
    """
    seed = check_seed(seed)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}. Received: layout={layout!r}")
    if lines < 1 or writers < 1:
        raise ValueError(f"lines and writers must be >= 1. Received: lines={lines}, writers={writers}")
    if writers > lines:
        raise ValueError(f"writers cannot exceed lines. Received: lines={lines}, writers={writers}")
    if lines_per_form < 1 or not 1 <= jpeg_quality <= 100:
        raise ValueError(
            f"lines_per_form must be >= 1 and jpeg_quality in 1..100. "
            f"Received: lines_per_form={lines_per_form}, jpeg_quality={jpeg_quality}"
        )
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1. Received: workers={workers}")
    if capture not in CAPTURES:
        raise ValueError(f"capture must be one of {', '.join(CAPTURES)}. Received: capture={capture!r}")
    out = Path(out)
    if fonts is None or isinstance(fonts, str):
        if (fonts or "train") not in FONT_SELECTIONS:
            raise ValueError(f"fonts must be one of {', '.join(FONT_SELECTIONS)} or a list of files. Received: {fonts!r}")
        choice = resolve_fonts(fonts or "train", font_dirs)
        font_list, font_source, font_warning = list(choice.fonts), choice.source, choice.warning
        font_selection = choice.selection
    else:
        font_list, font_source, font_warning, font_selection = [Path(f) for f in fonts], "explicit", "", None
    styles = make_writers(writers, seed, fonts=font_list, height=height)
    _prepare_output(out, overwrite)

    started = time.perf_counter()
    texts = generate_texts(lines, seed)
    forms: list[tuple] = []
    if layout == "kalapa":
        jobs = _plan_kalapa(texts, styles)
    else:
        jobs, forms = _plan_iam(texts, styles, lines_per_form)
    captures = line_captures(lines, seed, capture)
    jobs = [dataclasses.replace(j, capture=captures[j.index]) for j in jobs]
    results = _run(jobs, workers, (str(out), styles, seed, layout, jpeg_quality, camera), callback)

    if layout == "kalapa":
        _write_kalapa_annotations(out, jobs, styles)
    else:
        _write_iam_index(out, jobs, forms, results, seed)
    seconds = time.perf_counter() - started
    summary = {
        "out": str(out),
        "layout": layout,
        "lines": lines,
        "writers": writers,
        "forms": len(forms) if layout == "iam" else None,
        "seed": seed,
        "workers": workers,
        "fonts": sorted({Path(s.font).name for s in styles}),
        "font_source": font_source,
        "font_warning": font_warning,
        "captures": {c: captures.count(c) for c in ("scanner", "camera")},
        "seconds": round(seconds, 3),
        "lines_per_s": round(lines / seconds, 1) if seconds > 0 else None,
    }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "generator": f"vhrdata.synth {__version__}",
        "settings": {
            "lines": lines, "writers": writers, "seed": seed, "layout": layout, "height": height,
            "lines_per_form": lines_per_form, "jpeg_quality": jpeg_quality, "capture": capture,
            "fonts": font_selection,
        },
        "fonts": [str(f) for f in font_list],
        "font_source": font_source,
        "font_warning": font_warning,
        "camera": camera.to_dict(),
        # One letter per line index: s = scanner, c = camera.
        "captures": "".join(c[0] for c in captures),
        "writers": [
            {**s.to_dict(), "id": _writer_id(s, w, layout)} for w, s in enumerate(styles)
        ],
        "counts": {"lines": lines, "writers": writers, "forms": len(forms)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    logger.info("synth wrote %d lines to %s in %.1f s", lines, out, seconds)
    return summary


def _writer_id(style: WriterStyle, index: int, layout: str) -> str:
    return f"{index:03d}" if layout == "iam" else style.name


def _write_kalapa_annotations(out: Path, jobs: list[_Job], styles: list[WriterStyle]) -> None:
    (out / "annotations").mkdir(exist_ok=True)
    by_writer: dict[int, list[str]] = {}
    for job in sorted(jobs, key=lambda j: j.index):
        rel = job.path.removeprefix("images/")
        by_writer.setdefault(job.writer, []).append(f"{rel}\t{job.text}\n")
    for w, rows in by_writer.items():
        (out / "annotations" / f"{styles[w].name}.txt").write_text("".join(rows), encoding="utf-8")


_LINES_HEADER = """\
#--- lines.txt (vhrdata synth: synthetic Vietnamese address lines, IAM format) -------#
#
# format: s00-000-00 ok 154 19 408 746 1661 89 Số|253|đường|Trần|Phú,
#
#     s00-000-00  -> line id: form s00-000, line 00
#     ok          -> result of word segmentation (always ok: synthetic lines are exact)
#     154         -> gray level: pixels lighter than this were set to white
#     19          -> number of connected ink components in the line image
#     408 746 1661 89 -> bounding box of the line on its (imaginary) form: x y w h
#     Số|253|...  -> the transcription, words separated by |
#
"""

_FORMS_HEADER = """\
#--- forms.txt (vhrdata synth, IAM format) --------------------------------------------#
#
# format: s00-000 000 8 all 8 8 52 52
#
#     s00-000 -> form id
#     000     -> writer id
#     8       -> number of sentences (one address per line)
#     all     -> word segmentation: all lines segmented correctly
#     8 8     -> number of lines, and of lines correctly segmented
#     52 52   -> number of words, and of words correctly segmented
#
"""


def _write_iam_index(out: Path, jobs: list[_Job], forms: list[tuple], results: dict[int, tuple], seed: int) -> None:
    job_by_index = {job.index: job for job in jobs}
    line_rows, form_rows = [], []
    for form, w, indices in forms:
        y = int(line_rng(seed, LAYOUT_STREAM, indices[0]).integers(600, 800)) if indices else 700
        words = 0
        for i in indices:
            _, h, width, gray, components = results[i]
            job = job_by_index[i]
            x = int(line_rng(seed, LAYOUT_STREAM, i).integers(150, 400))
            line_id = Path(job.path).stem
            text = "|".join(job.text.split())
            words += len(job.text.split())
            line_rows.append(f"{line_id} ok {gray} {components} {x} {y} {width} {h} {text}\n")
            y += h + 30
        n = len(indices)
        form_rows.append(f"{form} {w:03d} {n} all {n} {n} {words} {words}\n")
    (out / "lines.txt").write_text(_LINES_HEADER + "".join(line_rows), encoding="utf-8")
    (out / "forms.txt").write_text(_FORMS_HEADER + "".join(form_rows), encoding="utf-8")
