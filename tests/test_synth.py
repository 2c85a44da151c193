"""Synthetic Vietnamese lines: texts, fonts, rendering, the two layouts, determinism and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from vhrdata.cli.synth import synth as synth_command
from vhrdata.errors import SynthError
from vhrdata.synth import (
    VIETNAMESE_LETTERS,
    find_fonts,
    generate_texts,
    load_gazetteer,
    make_writers,
    missing_chars,
    old_tone_style,
    render_line,
    synthesize,
)
from vhrdata.synth.addresses import MAX_CHARS, MIN_CHARS
from vhrdata.synth import generate
from vhrdata.synth.fonts import matplotlib_font_dir
from vhrdata.synth.render import _glyph

LOWER_LETTERS = VIETNAMESE_LETTERS[: len(VIETNAMESE_LETTERS) // 2]
SMALL = dict(height=40)  # small images keep the layout tests fast


def test_vietnamese_letters_are_the_134_nfc_letters():
    assert len(VIETNAMESE_LETTERS) == len(set(VIETNAMESE_LETTERS)) == 134
    assert unicodedata.normalize("NFC", VIETNAMESE_LETTERS) == VIETNAMESE_LETTERS
    assert LOWER_LETTERS.upper() == VIETNAMESE_LETTERS[67:]
    assert "đ" in LOWER_LETTERS and "ỹ" in LOWER_LETTERS and "Ặ" in VIETNAMESE_LETTERS


def test_texts_are_deterministic_and_prefix_stable():
    texts = generate_texts(30, seed=5)
    assert texts == generate_texts(30, seed=5)
    assert generate_texts(10, seed=5) == texts[:10]
    assert texts != generate_texts(30, seed=6)
    assert len(set(texts)) > 25


def test_texts_look_like_addresses():
    texts = generate_texts(400, seed=1)
    gazetteer = load_gazetteer()
    endings = set()
    for p in gazetteer.provinces:
        for name in (p.name, *p.variants):
            endings.update({name.upper(), old_tone_style(name).upper()})
    for text in texts:
        assert unicodedata.normalize("NFC", text) == text
        assert text == " ".join(text.split()), text  # no doubled or edge spaces
        assert "," in text or " - " in text, text  # parts are separated
        assert any(text.upper().endswith(e) for e in endings), text
    lengths = [len(t) for t in texts]
    inside = sum(MIN_CHARS <= n <= MAX_CHARS for n in lengths)
    assert inside >= 0.97 * len(texts)
    joined = "\n".join(texts)
    # The formats and abbreviations the real forms use all show up.
    for token in ("Số ", "Phường ", "Xã ", "Quận ", "Huyện ", "TP ", "Thị trấn", "Thôn ", "P.", "/"):
        assert token in joined, token
    assert any(t.isupper() for t in texts), "some lines should be written in capitals"


def test_vocabulary_covers_every_vietnamese_letter():
    words = "".join(load_gazetteer().words()).lower()
    assert [c for c in LOWER_LETTERS if c not in words] == []


def test_word_lists_have_all_63_provinces_with_districts():
    gazetteer = load_gazetteer()
    names = [p.name for p in gazetteer.provinces]
    assert len(names) == len(set(names)) == 63
    assert {p.kind for p in gazetteer.provinces} == {"city", "province"}
    assert all(gazetteer.districts[n] for n in names)
    assert sum(len(d) for d in gazetteer.districts.values()) > 500


@pytest.mark.parametrize(
    "new, old",
    [("Thanh Hóa", "Thanh Hoá"), ("Thủy Nguyên", "Thuỷ Nguyên"), ("khỏe", "khoẻ"), ("HÒA BÌNH", "HOÀ BÌNH"),
     ("Quý Cáp", "Quý Cáp"), ("Hoàng Mai", "Hoàng Mai"), ("Quỳnh", "Quỳnh")],
)
def test_old_tone_style_moves_only_open_syllable_marks(new, old):
    assert old_tone_style(new) == old


def test_found_fonts_cover_every_letter():
    fonts = find_fonts()
    assert fonts, "DejaVu ships with matplotlib, so at least it must be found"
    for font in fonts:
        assert missing_chars(font, VIETNAMESE_LETTERS) == "", font.name


def test_fonts_missing_vietnamese_are_skipped(tmp_path):
    bundled = matplotlib_font_dir()
    shutil.copy(bundled / "DejaVuSans.ttf", tmp_path / "good.ttf")
    shutil.copy(bundled / "cmr10.ttf", tmp_path / "latin_only.ttf")  # Computer Modern: no Vietnamese
    assert missing_chars(tmp_path / "latin_only.ttf", VIETNAMESE_LETTERS)
    assert [f.name for f in find_fonts([tmp_path], system=False)] == ["good.ttf"]


def test_every_letter_draws_a_real_glyph_in_every_font():
    for font in map(str, find_fonts()):
        tofu = _glyph(font, 32, "\ue000")[0]  # private-use code point: the font's "missing glyph" box
        for ch in VIETNAMESE_LETTERS:
            mask = _glyph(font, 32, ch)[0]
            assert mask is not None and mask.max() > 128, (font, ch)
            assert tofu is None or mask.shape != tofu.shape or not np.array_equal(mask, tofu), (font, ch)
            base = {"đ": "d", "Đ": "D"}.get(ch) or unicodedata.normalize("NFD", ch)[0]
            base_mask = _glyph(font, 32, base)[0]
            assert mask.shape != base_mask.shape or not np.array_equal(mask, base_mask), (font, ch)


def test_writers_are_deterministic_and_use_different_fonts():
    writers = make_writers(5, seed=2)
    assert writers == make_writers(5, seed=2)
    assert make_writers(3, seed=2) == writers[:3]
    assert [w.name for w in writers] == ["w000", "w001", "w002", "w003", "w004"]
    n_fonts = len(find_fonts())
    assert len({w.font for w in writers}) == min(5, n_fonts)
    assert writers != make_writers(5, seed=3)
    for w in writers:
        assert missing_chars(w.font, VIETNAMESE_LETTERS) == ""
        assert w.paper - w.ink >= 100  # dark ink on light paper


def test_render_line_is_deterministic_dark_on_light():
    writer = make_writers(1, seed=0, height=64)[0]
    text = "Số 253 đường Trần Phú, Thị trấn Nam Sách, Hải Dương"
    a = render_line(text, writer, np.random.default_rng(7))
    b = render_line(text, writer, np.random.default_rng(7))
    c = render_line(text, writer, np.random.default_rng(8))
    assert a.dtype == np.uint8 and a.ndim == 2 and a.shape[0] == writer.height
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:, : min(a.shape[1], c.shape[1])], c[:, : min(a.shape[1], c.shape[1])])
    assert np.median(a) > writer.paper - 30  # mostly paper
    assert np.percentile(a, 1) < writer.ink + 60  # with dark ink
    short = render_line("Hà Nội", writer, np.random.default_rng(7))
    assert short.shape[1] < a.shape[1] / 3


def test_render_line_normalises_nfd_and_rejects_blank():
    writer = make_writers(1, seed=0, height=40)[0]
    nfc = "Thừa Thiên Huế"
    a = render_line(unicodedata.normalize("NFD", nfc), writer, np.random.default_rng(1))
    b = render_line(nfc, writer, np.random.default_rng(1))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="Received"):
        render_line("   ", writer, np.random.default_rng(1))


def test_render_line_refuses_characters_no_font_has():
    writer = make_writers(1, seed=0, height=40)[0]
    with pytest.raises(SynthError, match="U\\+E001"):
        render_line("Hà Nội \ue001", writer, np.random.default_rng(1))


def _read_kalapa(out: Path) -> dict[str, tuple[str, str]]:
    items = {}
    for ann in sorted((out / "annotations").glob("*.txt")):
        for line in ann.read_text(encoding="utf-8").splitlines():
            rel, text = line.split("\t")
            assert rel.split("/")[0] == ann.stem
            items[rel] = (ann.stem, text)
    return items


def test_kalapa_layout_is_well_formed(tmp_path):
    out = tmp_path / "kalapa"
    summary = synthesize(out, lines=7, writers=3, seed=4, layout="kalapa", workers=1, **SMALL)
    assert summary["lines"] == 7 and summary["layout"] == "kalapa"
    items = _read_kalapa(out)
    assert len(items) == 7
    assert sorted({w for w, _ in items.values()}) == ["w000", "w001", "w002"]
    assert sorted(t for _, t in items.values()) == sorted(generate_texts(7, seed=4))
    for rel, (_, text) in items.items():
        assert rel.endswith(".jpg") and unicodedata.normalize("NFC", text) == text
        image = cv2.imread(str(out / "images" / rel), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 2
    on_disk = {p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.jpg")}
    assert on_disk == set(items)
    manifest = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert manifest["schema_version"] == 1 and manifest["settings"]["seed"] == 4
    assert [w["name"] for w in manifest["writers"]] == ["w000", "w001", "w002"]


def test_iam_layout_is_well_formed(tmp_path):
    out = tmp_path / "iam"
    summary = synthesize(out, lines=8, writers=2, seed=4, layout="iam", workers=1, lines_per_form=2, **SMALL)
    assert summary["forms"] == 4
    forms = {}
    for line in (out / "forms.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        form, writer, sentences, seg, n_lines, n_ok, words, words_ok = line.split(" ")
        assert seg == "all" and n_lines == n_ok == sentences and words == words_ok
        forms[form] = (writer, int(n_lines))
    assert sorted(w for w, _ in forms.values()) == ["000", "000", "001", "001"]  # several forms per writer
    texts = []
    per_form: dict[str, int] = {}
    for line in (out / "lines.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        line_id, result, gray, components, x, y, w, h, words = line.split(" ", 8)
        assert result == "ok" and " " not in words
        folder, number, _ = line_id.split("-")
        form = f"{folder}-{number}"
        assert form in forms
        per_form[form] = per_form.get(form, 0) + 1
        image = cv2.imread(str(out / "lines" / folder / form / f"{line_id}.png"), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 2
        assert image.shape == (int(h), int(w))
        assert int(components) > 0 and 0 < int(gray) < 255 and int(x) >= 0 and int(y) >= 0
        assert image.max() == 255 and (image > int(gray)).sum() == (image == 255).sum()  # IAM-style white
        texts.append(words.replace("|", " "))
    assert per_form == {f: n for f, (_, n) in forms.items()}
    assert sorted(texts) == sorted(generate_texts(8, seed=4))


def test_output_does_not_depend_on_worker_count(tmp_path):
    one = synthesize(tmp_path / "one", lines=6, writers=2, seed=9, workers=1, **SMALL)
    two = synthesize(tmp_path / "two", lines=6, writers=2, seed=9, workers=2, **SMALL)
    assert one["workers"] == 1 and two["workers"] == 2
    files_one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    files_two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert files_one == files_two and len(files_one) == 6 + 2 + 1
    for rel in files_one:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel


def _die(jobs):
    os._exit(3)


def test_a_dying_worker_raises_instead_of_hanging(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "_render_chunk", _die)
    with pytest.raises(SynthError, match="worker process died"):
        synthesize(tmp_path / "o", lines=4, writers=1, workers=2, **SMALL)


def test_progress_callback_counts_up_to_total(tmp_path):
    calls = []
    synthesize(tmp_path / "o", lines=5, writers=1, workers=1, callback=lambda d, t: calls.append((d, t)), **SMALL)
    assert calls[-1] == (5, 5)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_refuses_non_empty_output_and_overwrites_only_its_own(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        synthesize(foreign, lines=2, writers=1, workers=1, **SMALL)
    with pytest.raises(SynthError, match="not made by"):
        synthesize(foreign, lines=2, writers=1, workers=1, overwrite=True, **SMALL)
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tmp_path / "out"
    synthesize(out, lines=3, writers=1, workers=1, layout="kalapa", **SMALL)
    with pytest.raises(SynthError, match="--overwrite"):
        synthesize(out, lines=3, writers=1, workers=1, layout="iam", **SMALL)
    synthesize(out, lines=3, writers=1, workers=1, layout="iam", overwrite=True, **SMALL)
    assert (out / "lines.txt").is_file() and not (out / "images").exists() and not (out / "annotations").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(layout="pdf"), "layout"), (dict(seed=-1), "seed"), (dict(lines=2, writers=3), "writers"),
     (dict(workers=0), "workers")],
)
def test_bad_arguments_are_value_errors(tmp_path, kwargs, match):
    args = dict(lines=2, writers=1) | kwargs
    with pytest.raises(ValueError, match=match):
        synthesize(tmp_path / "o", **args)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("layout", ["kalapa", "iam"])
def test_ingest_reads_both_layouts_without_quarantine(tmp_path, layout):
    from vhrdata.ingest import IngestSettings, ingest

    synthesize(tmp_path / "src", lines=4, writers=2, seed=3, layout=layout, workers=1, **SMALL)
    result = ingest(tmp_path / "src", tmp_path / "records", IngestSettings(workers=1))
    assert (result.layout, result.n_in, result.kept, result.quarantined) == (layout, 4, 4, 0)


def test_cli_writes_and_summarises(tmp_path):
    out = tmp_path / "cli"
    runner = CliRunner()
    args = [str(out), "--lines", "4", "--writers", "2", "--workers", "1", "--height", "40", "--seed", "3"]
    result = runner.invoke(synth_command, args)
    assert result.exit_code == 0, result.output
    assert "wrote 4 lines · 2 writers" in result.output and "kalapa layout" in result.output
    assert len(_read_kalapa(out)) == 4

    again = runner.invoke(synth_command, args)
    assert again.exit_code == 1 and "not empty" in again.output and "Traceback" not in again.output
    assert runner.invoke(synth_command, args + ["--overwrite", "--layout", "iam"]).exit_code == 0
    assert (out / "lines.txt").is_file()


def test_cli_help_and_bad_arguments(tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(synth_command, ["--help"]).output
    assert "Example:" in help_text and "--layout" in help_text
    bad = runner.invoke(synth_command, [str(tmp_path / "x"), "--lines", "2", "--writers", "3"])
    assert bad.exit_code == 2 and "--writers" in bad.output
    assert not (tmp_path / "x").exists()


def test_cli_is_registered():
    from vhrdata.cli import main

    result = CliRunner().invoke(main, ["synth", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
