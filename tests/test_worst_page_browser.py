"""`evaluate`'s worst/index.html: what it says (diff, names, header) and how it loads in headless Chromium.

The browser half drives Debian's chromium (scripts/ensure_chromium.sh) through Playwright when it
is installed, else with --dump-dom and the probe of tests/test_stats_browser.py.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from vhrmodel_fixtures import build_line_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless chromium not found; run scripts/ensure_chromium.sh (needs apt-get and root) to install it",
)

# Held out of training: the tiny model misreads them, so the page has lines to show.
HELD_OUT = ("Hà Tĩnh", "Quảng  Nam", "Gò Vấp 12", "Thủ Đức")


def scored(rank_key: float, line_id: str, ref: str, hyp: str, width: int = 90):
    from vhrmodel.evaluate import _Scored
    from vhrmodel.metrics import edit_distance

    errors = edit_distance(ref, hyp)
    line = {"id": line_id, "writer": "w1", "reference": ref, "prediction": hyp, "char_errors": errors,
            "cer": errors / max(1, len(ref)), "confidence": 0.5}
    image = np.full((32, width), 255, np.uint8)
    image[10:20, 5:width - 5] = 0
    return _Scored((rank_key, errors, 0), line, image)


METRICS = {"model": "runs/x/model.keras", "store": "work/store", "split": "val", "decoder": "beam", "beam_width": 5,
           "lm": True, "cer": 0.125, "wer": 0.5, "ser": 0.75, "lines": 4, "cer_ci95": [0.05, 0.2]}


def test_worst_page_marks_each_kind_of_edit_and_keeps_spaces(tmp_path):
    from vhrmodel.evaluate import _write_worst

    worst = [scored(0.9, "val/w012_22.jpg", "Hà  Nội", "Ha  Nộii"), scored(0.5, "val/Đà Nẵng.PNG", "ab c", "abc")]
    _write_worst(tmp_path, worst, METRICS)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["001_val_w012_22.png", "002_val_Da_Nang.png"]  # no double extension, ASCII
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    truth = re.findall(r'<div class="text truth">(.*?)</div>', page)
    pred = re.findall(r'<div class="text prediction">(.*?)</div>', page)
    # "Hà  Nội" → "Ha  Nộii": à substituted by a, an i inserted; both spaces are in the page.
    assert re.sub(r"<[^>]+>", "", truth[0]) == "Hà  Nội"
    assert '<span class="sub" title="read as &#x27;a&#x27;">à</span>' in truth[0]
    assert '<span class="sub" title="should be &#x27;à&#x27;">a</span>' in pred[0]
    assert pred[0].count('class="ins"') == 1 and re.sub(r"<[^>]+>", "", pred[0]) == "Ha  Nộii"
    assert 'class="del"' not in truth[0] and 'class="gap"' not in pred[0]
    # "ab c" → "abc": the space is missing; the truth marks it, the prediction shows where.
    assert '<span class="del" title="missing from the prediction"> </span>' in truth[1]
    assert pred[1] == 'ab<span class="gap" title="missing &#x27; &#x27;"></span>c'
    css = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert "white-space: pre-wrap" in css and "image-rendering: pixelated" in css
    for kind in ("sub", "del", "ins"):  # three distinct colours
        assert re.search(rf"\.{kind} {{ background: var\(--{kind}\)", css)
    colours = dict(re.findall(r"--(sub|del|ins): (#[0-9a-f]{6})", css))
    assert len(set(colours.values())) == 3
    # The header: model, store, split, decoder, CER, WER, line count.
    header = re.search(r"<header>(.*?)</header>", page, re.S).group(1)
    for text in ("runs/x/model.keras", "work/store", "val", "beam (width 5, character LM)", "12.50 %", "50.00 %",
                 "lines evaluated"):
        assert text in header, text
    # The model input is scaled by a whole factor to at least 96 px tall.
    assert 'width="270" height="96"' in page
    assert "Hà  Nội" in (tmp_path / "index.md").read_text(encoding="utf-8")


def test_worst_page_without_errors_says_so(tmp_path):
    from vhrmodel.evaluate import _write_worst

    _write_worst(tmp_path, [], METRICS)
    assert "No line has an error." in (tmp_path / "index.html").read_text(encoding="utf-8")
    assert list(tmp_path.glob("*.png")) == []


@pytest.fixture(scope="module")
def held_out_eval(trained_run, tmp_path_factory) -> Path:
    """evaluate's output for the tiny trained model on a store whose val split adds unseen lines."""
    from vhrmodel.evaluate import evaluate

    root = tmp_path_factory.mktemp("held_out")
    store = build_line_store(root, held_out=HELD_OUT)
    out = root / "eval"
    evaluate(trained_run[0] / "model.keras", store, out, split="val", worst=6)
    return out


def load_page(page: Path, tmp_path: Path, screenshot: Path | None = None) -> tuple[list[str], list[dict]]:
    """(errors: console errors, page errors and failed loads; every image's load state and size)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None:
        from test_stats_browser import load_in_chromium

        probe, console = load_in_chromium(page, tmp_path)
        return probe["errors"] + console, probe["images"]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 1300, "height": 1000})
            tab.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}"))
            tab.goto(page.as_uri(), wait_until="load")
            images = tab.evaluate("""Array.from(document.images).map(i => ({alt: i.alt, src: i.getAttribute('src'),
                complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
                shownWidth: i.getBoundingClientRect().width, shownHeight: i.getBoundingClientRect().height}))""")
            if screenshot is not None:
                tab.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    return errors, images


@pytest.mark.browser
@needs_chromium
def test_worst_page_loads_cleanly_in_chromium(held_out_eval, tmp_path):
    import json

    page = held_out_eval / "worst" / "index.html"
    lines = [json.loads(x) for x in (held_out_eval / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    wrong = sum(1 for x in lines if x["char_errors"])
    assert wrong >= 2, "the tiny model read every held-out line; the page would be empty"
    errors, images = load_page(page, tmp_path, screenshot=tmp_path / "worst.png")
    assert errors == []
    shown = min(6, wrong)
    html_text = page.read_text(encoding="utf-8")
    assert len(images) == len(re.findall(r"<img ", html_text)) == 2 * shown  # original + model input per line
    assert [i["alt"] for i in images if not (i["complete"] and i["width"] > 0)] == []
    originals = [i for i in images if i["alt"].startswith("original of line")]
    assert len(originals) == shown
    assert sorted(p.name for p in (held_out_eval / "worst" / "originals").glob("*.png")) == sorted(
        p.name for p in (held_out_eval / "worst").glob("*.png"))
    for image in images:
        if "shownHeight" in image:  # Playwright: the page draws every line at a readable size
            assert image["shownHeight"] >= 90, image
    names = sorted(p.name for p in (held_out_eval / "worst").glob("*.png"))
    assert all(re.fullmatch(r"\d{3}_[0-9A-Za-z_-]+\.png", n) for n in names), names
    header = html.unescape(re.search(r"<header>(.*?)</header>", html_text, re.S).group(1))
    assert "model.keras" in header and "val" in header and "greedy" in header and f"{len(lines)}" in header
    if "shownHeight" in images[0]:
        assert (tmp_path / "worst.png").stat().st_size > 10_000
