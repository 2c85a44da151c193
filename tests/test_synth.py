"""Synthetic Vietnamese lines: texts, fonts, rendering, the two layouts, determinism and the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
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
    covers,
    draws_letters,
    find_fonts,
    generate_texts,
    load_gazetteer,
    make_writers,
    missing_chars,
    render_line,
    synthesize,
)
from vhrdata.synth.addresses import MAX_CHARS, MIN_CHARS
from vhrdata.synth import generate
from vhrdata.synth.fonts import matplotlib_font_dir
from vhrdata.synth.render import _glyph
from vhrdata.text import unify_tone_placement

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
            endings.update({name.upper(), unify_tone_placement(name, "new").upper()})
    for text in texts:
        assert unicodedata.normalize("NFC", text) == text
        assert text == " ".join(text.split()), text  # no doubled or edge spaces
        assert "," in text or " - " in text or ". " in text, text  # parts are separated
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
    "old, new",
    [("Thanh Hóa", "Thanh Hoá"), ("Thủy Nguyên", "Thuỷ Nguyên"), ("khỏe", "khoẻ"), ("HÒA BÌNH", "HOÀ BÌNH"),
     ("Quý Cáp", "Quý Cáp"), ("Hoàng Mai", "Hoàng Mai"), ("Quỳnh", "Quỳnh")],
)
def test_generator_tone_variant_moves_only_open_syllable_marks(old, new):
    # the generator writes half its lines in the "new" placement (vhrdata.text's names)
    assert unify_tone_placement(old, "new") == new


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


def test_placeholder_fonts_whose_cmap_covers_everything_are_skipped(tmp_path):
    # matplotlib's LastResortHE maps every code point to a box per Unicode block: its cmap "covers"
    # Vietnamese, so the coverage check alone let `--font-dir` draw boxes under real labels.
    bundled = matplotlib_font_dir()
    last_resort = bundled / "LastResortHE-Regular.ttf"
    if not last_resort.is_file():
        pytest.skip(f"this matplotlib ships no {last_resort.name}")
    shutil.copy(bundled / "DejaVuSans.ttf", tmp_path / "good.ttf")
    shutil.copy(last_resort, tmp_path / "boxes.ttf")
    assert missing_chars(tmp_path / "boxes.ttf", VIETNAMESE_LETTERS) == ""
    assert not draws_letters(tmp_path / "boxes.ttf") and draws_letters(tmp_path / "good.ttf")
    assert [f.name for f in find_fonts([tmp_path], system=False)] == ["good.ttf"]
    assert "LastResortHE-Regular.ttf" not in [f.name for f in find_fonts([bundled], system=False)]


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
    assert manifest["schema_version"] == 2 and manifest["settings"]["seed"] == 4
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



# --- real administrative units (vietnamadminunits) -------------------------------------------

def _db_rows(sql: str) -> set[tuple]:
    import sqlite3

    from vhrdata.synth import admin_units_db

    with sqlite3.connect(f"file:{admin_units_db()}?mode=ro", uri=True) as conn:
        return set(conn.execute(sql).fetchall())


def _fold(text: str) -> str:
    return unify_tone_placement(text, "new").casefold()


def test_addresses_name_real_wards_in_their_real_district_and_province():
    import numpy as np

    from vhrdata.synth import generate_address_unit

    legacy = _db_rows("SELECT province, district, ward FROM admin_units_legacy")
    modern = _db_rows("SELECT province, ward FROM admin_units")
    n_legacy = n_modern = written = 0
    for i in range(400):
        text, unit = generate_address_unit(np.random.default_rng(i))
        if unit.legacy:
            n_legacy += 1
            assert (unit.province_full, unit.district_full, unit.ward_full) in legacy, unit
            if not unit.district.isdigit():
                assert _fold(unit.district) in _fold(text), (text, unit)
        else:
            n_modern += 1
            assert (unit.province_full, unit.ward_full) in modern, unit
        written += _fold(unit.ward) in _fold(text)
    assert n_legacy > 250 and n_modern > 20  # mostly the legacy structure the labelled data uses
    assert written >= 0.95 * 400  # the ward is written (a few writers leave it out)


def test_every_legacy_triple_is_loaded_with_its_district():
    g = load_gazetteer()
    loaded = {(u.province_full, u.district_full, u.ward_full)
              for by_d in g.legacy.values() for wards in by_d.values() for u in wards}
    assert loaded == _db_rows(
        "SELECT province, district, ward FROM admin_units_legacy WHERE ward IS NOT NULL AND ward != ''")
    assert len(loaded) > 10000
    assert sum(len(w) for w in g.modern.values()) == 3321
    # The ward of the old bug ("Thị Trấn Ea Tu, Huyện An Dương") can only come with its own district.
    for by_d in g.legacy.values():
        for wards in by_d.values():
            assert len({u.district_full for u in wards}) == 1


def test_texts_mix_the_forms_people_write():
    joined = "\n".join(generate_texts(3000, seed=2))
    for token in ("P.", "Q.", "TP.HCM", "Tp", "H.", "TX", "Phường", "phường", "Quận", "Huyện", "Xã", "Thị trấn",
                  "Số ", "số ", "/", "Ngõ", "Ấp", "Thôn"):
        assert token in joined, token
    assert re.search(r"\bP\.?\d", joined) and re.search(r"\bQ\.?\d", joined)  # "P.3", "Q5"
    assert re.search(r"\b\d+[A-H]\b", joined)  # "12A"


def test_gazetteer_needs_no_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    load_gazetteer.cache_clear()
    try:
        assert load_gazetteer().legacy
    finally:
        load_gazetteer.cache_clear()


# --- handwriting fonts (Fontsource via npm) ---------------------------------------------------

from vhrdata.synth import fontsource  # noqa: E402
from vhrdata.synth.fonts import REQUIRED_CHARS  # noqa: E402

_FACE = "patrick-hand"


def _tarball(tmp_path: Path) -> Path:
    """A cache folder holding the Fontsource tarball of one face (from the user cache or npm)."""
    cache = tmp_path / "cache"
    (cache / "npm").mkdir(parents=True)
    name = f"fontsource-{_FACE}-{fontsource.HANDWRITING_FACES[_FACE]}.tgz"
    cached = fontsource.fonts_cache() / "npm" / name
    if cached.is_file():
        shutil.copy(cached, cache / "npm" / name)
        return cache
    if not fontsource.npm_available():
        pytest.skip("npm is not installed and no Fontsource tarball is cached (run `make fonts`)")
    try:
        fontsource._npm_pack(_FACE, fontsource.HANDWRITING_FACES[_FACE], cache / "npm", timeout=60)
    except Exception as ex:  # noqa: BLE001 - any npm failure means: registry unreachable here
        pytest.skip(f"npm could not fetch @fontsource/{_FACE}: {ex}")
    return cache


def test_fetch_merges_subsets_into_one_font_that_covers_vietnamese(tmp_path):
    cache = _tarball(tmp_path)
    results = fontsource.fetch_faces(cache, {_FACE: fontsource.HANDWRITING_FACES[_FACE]})
    assert [r.covered for r in results] == [True], results
    merged = cache / "ttf" / f"{_FACE}.ttf"
    assert missing_chars(merged, REQUIRED_CHARS) == ""
    assert fontsource.handwriting_fonts("train", cache) == [merged]
    manifest = json.loads((cache / "fonts.json").read_text(encoding="utf-8"))
    assert manifest["faces"][0]["name"] == _FACE and manifest["faces"][0]["covered"]
    # It draws real glyphs for the Vietnamese letters, not boxes.
    for ch in "ặẫỡữỷĐ":
        mask = _glyph(str(merged), 32, ch)[0]
        base = _glyph(str(merged), 32, {"Đ": "D"}.get(ch) or unicodedata.normalize("NFD", ch)[0])[0]
        assert mask is not None and mask.max() > 128 and (mask.shape != base.shape or not np.array_equal(mask, base))


def test_a_face_without_its_vietnamese_subset_fails_coverage(tmp_path):
    import tarfile

    cache = _tarball(tmp_path)
    tgz = next((cache / "npm").glob("*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    latin = fontsource.subset_files(tmp_path / "x" / "package", _FACE)[0]
    assert "-latin-400" in latin.name
    merged = fontsource.merge_face([latin], tmp_path / "ttf" / "latin-only.ttf")
    assert missing_chars(merged, "ặđ")
    assert fontsource.handwriting_fonts("all", tmp_path) == []


def _fake_cache(tmp_path: Path, names) -> Path:
    (tmp_path / "fc" / "ttf").mkdir(parents=True)
    for n in names:
        shutil.copy(matplotlib_font_dir() / "DejaVuSans.ttf", tmp_path / "fc" / "ttf" / f"{n}.ttf")
    return tmp_path / "fc"


def test_held_out_faces_never_reach_training(tmp_path):
    held = fontsource.HELD_OUT_FACES
    assert 2 <= len(held) <= 3 and set(held) <= set(fontsource.HANDWRITING_FACES)
    cache = _fake_cache(tmp_path, ["patrick-hand", "itim", *held])
    train = {p.stem for p in fontsource.handwriting_fonts("train", cache)}
    test = {p.stem for p in fontsource.handwriting_fonts("held-out", cache)}
    assert train == {"patrick-hand", "itim"} and test == set(held)
    assert {p.stem for p in fontsource.handwriting_fonts("all", cache)} == train | test
    with pytest.raises(ValueError, match="selection"):
        fontsource.handwriting_fonts("test", cache)


def test_synth_uses_the_chosen_faces_and_records_them(tmp_path, monkeypatch):
    cache = _fake_cache(tmp_path, ["patrick-hand", "itim", *fontsource.HELD_OUT_FACES])
    monkeypatch.setenv("VHR_FONTS_DIR", str(cache))
    summary = synthesize(tmp_path / "o", lines=4, writers=4, seed=0, workers=1, fonts="held-out", **SMALL)
    manifest = json.loads((tmp_path / "o" / "synth.json").read_text(encoding="utf-8"))
    assert summary["font_source"] == manifest["font_source"] == "handwriting" and not manifest["font_warning"]
    assert {Path(w["font"]).stem for w in manifest["writers"]} <= set(fontsource.HELD_OUT_FACES)
    assert manifest["settings"]["fonts"] == "held-out"


def test_without_handwriting_fonts_synth_falls_back_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VHR_FONTS_DIR", str(tmp_path / "empty"))
    with caplog.at_level("WARNING", logger="vhrdata.synth.fontsource"):
        summary = synthesize(tmp_path / "o", lines=3, writers=2, seed=0, workers=1, **SMALL)
    assert "falling back" in caplog.text and "make fonts" in caplog.text
    manifest = json.loads((tmp_path / "o" / "synth.json").read_text(encoding="utf-8"))
    assert summary["font_source"] == manifest["font_source"] == "system-fallback"
    assert "make fonts" in manifest["font_warning"]
    assert manifest["fonts"] and all(covers(f, REQUIRED_CHARS) for f in manifest["fonts"])


def test_fonts_system_ignores_the_handwriting_cache_and_does_not_warn(tmp_path, monkeypatch, caplog):
    cache = _fake_cache(tmp_path, ["patrick-hand", "itim"])
    monkeypatch.setenv("VHR_FONTS_DIR", str(cache))
    with caplog.at_level("WARNING", logger="vhrdata.synth.fontsource"):
        summary = synthesize(tmp_path / "o", lines=3, writers=2, seed=0, workers=1, fonts="system", **SMALL)
    assert "falling back" not in caplog.text
    manifest = json.loads((tmp_path / "o" / "synth.json").read_text(encoding="utf-8"))
    assert summary["font_source"] == manifest["font_source"] == "system" and not manifest["font_warning"]
    assert manifest["fonts"] and not any(Path(f).is_relative_to(cache) for f in manifest["fonts"])
    assert fontsource.handwriting_fonts("system", cache) == []


def test_faces_are_normalised_to_a_similar_letter_size():
    from vhrdata.synth.render import _size_scale

    fonts = fontsource.handwriting_fonts("all") or find_fonts()
    for f in fonts:
        assert 0.6 <= _size_scale(str(f)) <= 2.2


# --- capture: scanner, camera, strike-throughs ------------------------------------------------

from vhrdata.synth import SYNTH_CAMERA, TEST_CAMERA, CameraRanges, camera_degrade, line_captures  # noqa: E402


def _line(seed=0):
    writer = make_writers(1, seed=0, height=48)[0]
    return render_line("Số 12 Trần Phú, Phường 3, Quận 5, TP.HCM", writer, np.random.default_rng(seed))


def test_camera_degrade_changes_the_image_keeps_shape_and_dtype_and_is_deterministic():
    img = _line()
    a = camera_degrade(img, np.random.default_rng(1))
    b = camera_degrade(img, np.random.default_rng(1))
    c = camera_degrade(img, np.random.default_rng(2))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, img)
    # Phone photos are greyer than scans, but the ink stays darker than the paper.
    outs = [camera_degrade(img, np.random.default_rng(s)) for s in range(20)]
    assert np.mean([np.median(o) for o in outs]) < np.median(img) - 15
    assert all(np.percentile(o, 2) < np.median(o) - 40 for o in outs)


@pytest.mark.parametrize("effect", [f.name for f in dataclasses.fields(CameraRanges) if f.name.startswith("p_")])
def test_each_camera_effect_alone_changes_pixels(effect):
    off = {f.name: 0.0 for f in dataclasses.fields(CameraRanges) if f.name.startswith("p_")}
    ranges = CameraRanges(**(off | {effect: 1.0, "p_ruled": float(effect in ("p_ruled", "p_margin"))}), base=(1.0, 1.0))
    img = _line()
    out = camera_degrade(img, np.random.default_rng(3), ranges)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img), effect


def test_camera_ranges_validate_and_the_test_preset_differs_from_training():
    from vhrdata.synth import TEST_CAMERA_SEED
    from vhrmodel.augment import AugmentConfig

    with pytest.raises(ValueError, match="p_shadow"):
        CameraRanges(p_shadow=1.5)
    with pytest.raises(ValueError, match="gradient"):
        CameraRanges(gradient=(0.5, 0.1))
    with pytest.raises(ValueError, match="uint8"):
        camera_degrade(np.zeros((4, 4), np.float32), np.random.default_rng(0))
    assert TEST_CAMERA != SYNTH_CAMERA and TEST_CAMERA.jpeg_quality[0] < SYNTH_CAMERA.jpeg_quality[0]
    aug = AugmentConfig.with_camera()
    assert TEST_CAMERA.shadow != aug.shadow and TEST_CAMERA.perspective != aug.perspective
    assert TEST_CAMERA.gradient != aug.illumination and TEST_CAMERA.jpeg_quality != aug.jpeg_quality
    assert TEST_CAMERA_SEED not in (0, 1, 42)


def test_capture_mix_is_per_line_deterministic_and_recorded(tmp_path):
    caps = line_captures(200, 5, "mix")
    assert caps == line_captures(200, 5, "mix") and 60 < caps.count("camera") < 140
    assert line_captures(3, 5, "camera") == ["camera"] * 3
    summary = synthesize(tmp_path / "o", lines=12, writers=2, seed=5, workers=1, capture="mix", **SMALL)
    manifest = json.loads((tmp_path / "o" / "synth.json").read_text(encoding="utf-8"))
    assert manifest["captures"] == "".join(c[0] for c in line_captures(12, 5, "mix"))
    first = line_captures(12, 5, "mix")
    assert summary["captures"] == {"scanner": first.count("scanner"), "camera": first.count("camera")}
    assert manifest["settings"]["capture"] == "mix" and manifest["camera"] == json.loads(json.dumps(SYNTH_CAMERA.to_dict()))
    with pytest.raises(ValueError, match="capture"):
        synthesize(tmp_path / "p", lines=2, writers=1, capture="phone")


def test_render_camera_and_strike_through():
    writer = make_writers(1, seed=0, height=48)[0]
    text = "Số 12 Trần Phú, Phường 3, Quận 5, TP.HCM"
    scan = render_line(text, writer, np.random.default_rng(4))
    cam = render_line(text, writer, np.random.default_rng(4), capture="camera")
    assert cam.shape == scan.shape and cam.dtype == np.uint8 and np.median(cam) < np.median(scan)
    struck = render_line(text, writer, np.random.default_rng(4), strike_p=1.0)
    clean = render_line(text, writer, np.random.default_rng(4), strike_p=0.0)
    assert struck.shape[0] == clean.shape[0] and (struck < 128).sum() > (clean < 128).sum()
    with pytest.raises(ValueError, match="capture"):
        render_line(text, writer, np.random.default_rng(4), capture="mix")
