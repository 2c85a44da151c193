"""The address LM, the lexicon and tune-lm through Recognizer, predict, evaluate and tune-lm (tiny model)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from vhrmodel_fixtures import TEXTS, untrained_tiny_model

from vhrdata.records import read_records
from vhrdata.store import open_store
from vhrmodel.cli import main
from vhrmodel.lexicon import Lexicon, SnapSettings, snap_fields
from vhrmodel.lm import read_char_lm, write_char_lm, write_tuned
from vhrmodel.predict import Recognizer
from vhrmodel.tune import DEFAULT_RESCORE_GRID, snap_settings_grid, tune_lm


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_file(line_store, tmp_path_factory):
    """A tiny model with the store's charset and settings (random weights: fast, and wrong)."""
    return untrained_tiny_model(line_store, tmp_path_factory.mktemp("lm_model"))


@pytest.fixture(scope="module")
def lm_file(tmp_path_factory):
    """Labels plus a few address lines (the whole corpus is tested in test_lexicon)."""
    corpus = ["Phường Tân Định, Quận 1, Thành phố Hồ Chí Minh", "Xã Đất Mũi, Tỉnh Cà Mau"]
    return write_char_lm(TEXTS, tmp_path_factory.mktemp("lm") / "charlm.json", order=3, corpus=corpus)


@pytest.fixture(scope="module")
def test_images(line_store):
    df = read_records(open_store(line_store).index["build"]["records"])
    return list(df[df["split"] == "test"]["path"])[:3]


def one_line_error(result):
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_tune_lm_refuses_test_splits(model_file, line_store, lm_file):
    for split in ("test", "test-camera"):
        result = run("tune-lm", "--model", model_file, "--store", line_store, "--split", split, "--lm", lm_file)
        assert result.exit_code == 2
        assert "never tunes on a test split" in one_line_error(result)
    with pytest.raises(ValueError, match="never tunes"):
        tune_lm(model_file, line_store, lm_file, split="test")


def test_decoding_options_that_make_no_sense_are_refused(model_file, line_store, lm_file, test_images, tmp_path):
    cases = [
        (["--lexicon"], "--lexicon snaps"),
        (["--lm", lm_file, "--lexicon"], "--decoder beam"),  # the LM needs beam first
        (["--decoder", "beam", "--lexicon"], "--lexicon snaps"),
        (["--lm-weight", "0.3"], "--lm-weight weights"),
        (["--decoder", "beam", "--lm-weight", "0.3"], "--lm-weight weights"),
    ]
    for extra, needle in cases:
        by_predict = run("predict", "--model", model_file, test_images[0], *extra)
        by_evaluate = run("evaluate", "--model", model_file, "--store", line_store, "--out", tmp_path / "e", *extra)
        for result in (by_predict, by_evaluate):
            assert result.exit_code == 2 and needle in one_line_error(result), (extra, result.output)


def test_tune_lm_writes_the_values_predict_then_uses(model_file, line_store, lm_file, test_images, tmp_path):
    tuned_path = tmp_path / "tuned.json"
    result = run("tune-lm", "--model", model_file, "--store", line_store, "--split", "val", "--lm", lm_file,
                 "--out", tuned_path, "--weights", "0.3", "--beam-width", "3")
    assert result.exit_code == 0, result.output
    settings_lines = [x for x in result.output.splitlines() if x.startswith("lm_weight ")]
    # the weight, then every string-snapping setting of the grid: 4 * 3 * 4 flat, and each of those
    # with the hierarchy at 4 scores within a province, each without and with prefix repair; then
    # rescoring at 3 confidences * 6 unit bonuses, without and with prefix repair, each without
    # streets and with them at 4 street bonuses
    rescored = [x for x in settings_lines if "rescored" in x]
    assert len(settings_lines) == 1 + 4 * 3 * 4 * (1 + 4) * 2 + 3 * 6 * 2 * (1 + 4) == \
        1 + len(snap_settings_grid()) + len(snap_settings_grid(DEFAULT_RESCORE_GRID))
    assert len(rescored) == 3 * 6 * 2 * 5 and all("hierarchy" in x for x in rescored)
    assert sum(" streets " in x for x in rescored) == 3 * 6 * 2 * 4
    assert sum("hierarchy" in x for x in settings_lines) == 4 * 3 * 4 * 4 * 2 + len(rescored)
    assert sum(x.endswith("prefixes") or " prefixes " in x for x in settings_lines) == 4 * 3 * 4 * 5 + 3 * 6 * 5
    assert settings_lines[0].startswith("lm_weight 0.30 · no lexicon · CER ")
    assert f"wrote {tuned_path}" in result.output
    tuned = json.loads(tuned_path.read_text(encoding="utf-8"))["meta"]["tuned"]
    assert tuned["lm_weight"] == 0.3 and tuned["tuned_on"]["split"] == "val"
    assert tuned["tuned_on"]["lines"] == len(TEXTS)
    assert "lexicon" in tuned and SnapSettings.from_dict(tuned["snap"])  # a usable setting either way
    assert read_char_lm(lm_file).meta.get("tuned") is None  # --out leaves the source alone
    assert not [p.name for p in tuned_path.parent.iterdir() if ".tmp" in p.name]  # no temporary file left

    lm = read_char_lm(tuned_path)
    assert Recognizer(model_file, decoder="beam", beam_width=3, lm=lm).lm_weight == 0.3
    assert Recognizer(model_file, decoder="beam", lm=lm).beam_width == 3  # the width it was tuned at
    assert Recognizer(model_file, decoder="beam", beam_width=3, lm=lm, lm_weight=0.0).lm_weight == 0.0
    expected = Recognizer(model_file, decoder="beam", beam_width=3, lm=lm, lm_weight=0.3,
                          lexicon=tuned["lexicon"]).recognize(test_images)
    # no --beam-width: the tuned width (3) is predict's default
    out = run("predict", "--model", model_file, *test_images, "--decoder", "beam",
              "--lm", tuned_path, "--json", "--no-warm-up")
    assert out.exit_code == 0, out.output
    rows = [json.loads(x) for x in out.output.splitlines() if x.startswith("{")]
    assert [r["text"] for r in rows] == [p.text for p in expected]


def test_tune_lm_library_picks_the_lowest_cer_and_replaces_the_file(model_file, line_store, tmp_path):
    path = write_char_lm(TEXTS, tmp_path / "charlm.json", order=3)
    result = tune_lm(model_file, line_store, path, weights=(0.0, 1.0), snap_grid={}, beam_width=3)
    rows = result["rows"]
    assert [r["lm_weight"] for r in rows] == [0.0, 1.0] and all(r["lexicon"] is None for r in rows)
    best = min(rows, key=lambda r: r["cer"])
    tuned = read_char_lm(path).meta["tuned"]
    assert tuned["lm_weight"] == best["lm_weight"] and tuned["lexicon"] is False and "snap" not in tuned
    assert result["path"] == str(path)


def test_tune_lm_chooses_the_beam_width_too_and_decoding_then_uses_it(model_file, line_store, tmp_path):
    path = write_char_lm(TEXTS, tmp_path / "charlm.json", order=3)
    result = tune_lm(model_file, line_store, path, weights=(0.0, 1.0), snap_grid={}, beam_width=(1, 3))
    rows = result["rows"]
    assert [(r["beam_width"], r["lm_weight"]) for r in rows] == [(1, 0.0), (1, 1.0), (3, 0.0), (3, 1.0)]
    best = min(rows, key=lambda r: r["cer"])  # the first of equal CERs: the narrower beam, the smaller weight
    tuned = read_char_lm(path).meta["tuned"]
    assert (tuned["tuned_on"]["beam_width"], tuned["lm_weight"]) == (best["beam_width"], best["lm_weight"])
    assert tuned["tuned_on"]["cer"] == best["cer"]
    assert Recognizer(model_file, decoder="beam", lm=read_char_lm(path)).beam_width == best["beam_width"]
    with pytest.raises(ValueError, match="beam widths"):
        tune_lm(model_file, line_store, path, weights=(0.0,), snap_grid={}, beam_width=())


def test_tune_lm_tries_the_lexicon_after_the_best_pairs_and_keeps_the_lowest_row(model_file, line_store, tmp_path):
    path = write_char_lm(TEXTS, tmp_path / "charlm.json", order=3)
    grid = {"min_score": (0.0, 90.0), "min_margin": (0.0,), "max_confidence": (1.01,)}
    result = tune_lm(model_file, line_store, path, weights=(0.0, 0.5, 1.0), snap_grid=grid,
                     beam_width=(1, 3), lexicon=Lexicon({"province": TEXTS}), lexicon_pairs=2)
    rows = result["rows"]
    plain = [r for r in rows if r["lexicon"] is None]
    assert len(plain) == 6 and rows[:6] == plain  # every pair alone first
    ranked = sorted(plain, key=lambda r: r["cer"])
    # then both lexicon settings after the best pair alone, then after the second best
    snapped = [(r["beam_width"], r["lm_weight"]) for r in rows[6:]]
    first, second = [(r["beam_width"], r["lm_weight"]) for r in ranked[:2]]
    assert snapped == [first, first, second, second]
    best = min(rows, key=lambda r: r["cer"])
    tuned = read_char_lm(path).meta["tuned"]
    assert (tuned["tuned_on"]["beam_width"], tuned["lm_weight"], tuned["tuned_on"]["cer"]) == \
        (best["beam_width"], best["lm_weight"], best["cer"])
    assert tuned["lexicon"] is (best["lexicon"] is not None)
    if tuned["lexicon"]:
        assert tuned["snap"] == best["lexicon"]
    assert len(tune_lm(model_file, line_store, path, weights=(0.0, 0.5), snap_grid=grid, beam_width=1,
                       lexicon=Lexicon({"province": TEXTS}), lexicon_pairs=5)["rows"]) == 2 + 2 * 2  # only 2 pairs
    with pytest.raises(ValueError, match="lexicon_pairs"):
        tune_lm(model_file, line_store, path, weights=(0.0,), snap_grid=grid, beam_width=1, lexicon_pairs=0)


def test_tune_lm_cli_takes_several_beam_widths_and_refuses_bad_ones(model_file, line_store, lm_file, tmp_path):
    out = tmp_path / "tuned.json"
    result = run("tune-lm", "--model", model_file, "--store", line_store, "--lm", lm_file, "--out", out,
                 "--weights", "0,0.5", "--beam-width", "1,2", "--no-lexicon")
    assert result.exit_code == 0, result.output
    rows = [x for x in result.output.splitlines() if x.startswith("beam ")]
    assert [x.split(" · ")[:2] for x in rows] == [["beam 1", "lm_weight 0.00"], ["beam 1", "lm_weight 0.50"],
                                                  ["beam 2", "lm_weight 0.00"], ["beam 2", "lm_weight 0.50"]]
    width = read_char_lm(out).meta["tuned"]["tuned_on"]["beam_width"]
    assert f"chose beam width {width}, lm_weight " in result.output
    quiet = run("tune-lm", "--model", model_file, "--store", line_store, "--lm", lm_file, "--out", tmp_path / "q.json",
                "--weights", "0,0.5", "--beam-width", "1,2", "--no-lexicon", "-q")
    assert quiet.exit_code == 0, quiet.output
    shown = [x for x in quiet.output.splitlines() if x.strip()]
    assert len(shown) == 1 and shown[0].startswith("chose beam width ")  # the choice alone, the same file written
    assert read_char_lm(tmp_path / "q.json").meta["tuned"] == read_char_lm(out).meta["tuned"]
    for bad in ("0,3", "ten", ""):
        refused = run("tune-lm", "--model", model_file, "--store", line_store, "--lm", lm_file, "--beam-width", bad)
        assert refused.exit_code == 2 and "--beam-width" in one_line_error(refused)


def test_recognizer_lexicon_snaps_a_low_confidence_field(model_file):
    rec = Recognizer(model_file, decoder="beam", lexicon=True)
    assert rec.snap == SnapSettings()
    logits = np.zeros((2, 40, len(rec.charset) + 1), np.float32)
    lengths = np.array([40, 40])
    texts = ["Ha Nội", "Ha Nội"]  # (the fixtures' charset has no comma: one field per line)
    per_char = [[0.99] + [0.3] * 5, [0.99] * 6]  # the second line was read confidently
    out, confs = rec.apply_lexicon(texts, [0.5, 0.5], logits, lengths, char_confs=per_char)
    assert out == ["Hà Nội", "Ha Nội"]
    assert confs[1] == 0.5 and 0 < confs[0] <= 1  # the changed line's confidence is recomputed
    # A snap that would write a character the model cannot emit is not made.
    assert "-" not in rec.charset
    rec.lexicon = Lexicon({"province": ["Hà-Nội"]})
    assert snap_fields("Hà Nội", [0.3] * 6, rec.lexicon)[0] == "Hà-Nội"
    out, _ = rec.apply_lexicon(["Hà Nội"], [0.5], logits[:1], lengths[:1], char_confs=[[0.3] * 6])
    assert out == ["Hà Nội"]


def spelled_logits(rec, text, frames=40):
    """Logits [frames, C] whose best path spells `text` (one frame per character, blanks between)."""
    logits = np.zeros((frames, len(rec.charset) + 1), np.float32)
    logits[:, 0] = 5.0
    for i, ch in enumerate(text):
        logits[2 * i + 1, 0] = 0.0
        logits[2 * i + 1, int(rec.charset.encode(ch)[0])] = 8.0
    return logits


def test_recognizer_line_scorer_is_the_ctc_likelihood_plus_the_weighted_lm(model_file, lm_file):
    from vhrmodel.decoding import ctc_log_likelihood, log_softmax

    lm = read_char_lm(lm_file)
    rec = Recognizer(model_file, decoder="beam", lm=lm, lm_weight=0.5)
    logits = np.random.default_rng(0).normal(size=(30, len(rec.charset) + 1)).astype(np.float32)
    lines = ["Hà Nội", "Ha Nội", "Hà, Nội"]  # the fixtures' charset has no comma
    scores = rec.line_scorer(logits)(lines)
    ids = [rec.charset.encode(x).tolist() for x in lines[:2]]
    ll = ctc_log_likelihood(log_softmax(np.stack([logits, logits])), ids)
    assert scores[:2] == pytest.approx([ll[0] + 0.5 * lm.score(lines[0]), ll[1] + 0.5 * lm.score(lines[1])])
    assert scores[2] == -np.inf
    greedy = Recognizer(model_file)  # no LM: the model alone
    assert greedy.line_scorer(logits)(lines[:1]) == pytest.approx([ll[0]])
    # a memo keeps each text's score: the same scores, and a text in it is not scored again
    memo: dict[str, float] = {}
    assert rec.line_scorer(logits, memo=memo)(lines + lines[:1]) == pytest.approx(scores + scores[:1])
    assert set(memo) == set(lines)
    memo["Hà Nội"] = 123.0
    assert rec.line_scorer(logits, memo=memo)(["Hà Nội", "Ha Nội"]) == pytest.approx([123.0, scores[1]])


def test_apply_lexicon_rescores_with_the_scorers_it_is_given(model_file):
    rec = Recognizer(model_file, lexicon=Lexicon({"province": ["Hà Nội", "Hà Nối"]}),
                     snap=SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=0.0))
    logits = spelled_logits(rec, "Ha Nội")[None]
    seen = []

    def prefers_ha_noi(lines):  # a scorer that disagrees with the frames (both in the charset)
        seen.extend(lines)
        return [10.0 if line == "Hà Nối" else 0.0 for line in lines]

    out, _ = rec.apply_lexicon(["Ha Nội"], [0.2], logits, np.array([40]), char_confs=[[0.3] * 6],
                               scorers=[prefers_ha_noi])
    assert out == ["Hà Nối"] and "Hà Nối" in seen


def test_recognizer_rescoring_follows_what_the_model_read(model_file):
    rec = Recognizer(model_file, lexicon=Lexicon({"province": ["Hà Nội", "Hà Nam"]}),
                     snap=SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=0.0))
    lengths = np.array([40])
    # The decoder said "Ha Nội" (unsure); the frames spell "Hà Nội": the model prefers the unit name.
    out, confs = rec.apply_lexicon(["Ha Nội"], [0.2], spelled_logits(rec, "Hà Nội")[None], lengths,
                                   char_confs=[[0.3] * 6])
    assert out == ["Hà Nội"] and confs[0] > 0.2
    # The frames spell "Ha Nội" itself: without a unit bonus the field stays as read ...
    plain = spelled_logits(rec, "Ha Nội")[None]
    assert rec.apply_lexicon(["Ha Nội"], [0.9], plain, lengths, char_confs=[[0.3] * 6])[0] == ["Ha Nội"]
    # ... and a large enough bonus (the prior that an address names real units) moves it.
    rec.snap = SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=100.0)
    assert rec.apply_lexicon(["Ha Nội"], [0.9], plain, lengths, char_confs=[[0.3] * 6])[0] == ["Hà Nội"]


def test_an_lm_tuned_to_rescore_makes_predict_rescore(model_file, lm_file, test_images, tmp_path):
    tuned = SnapSettings(rescore=True, unit_bonus=8.0, max_confidence=1.01)
    path = write_tuned(lm_file, {"lm_weight": 0.2, "lexicon": True, "snap": tuned.to_dict()}, tmp_path / "rescore.json")
    rec = Recognizer(model_file, decoder="beam", beam_width=3, lm=read_char_lm(path), lexicon=True)
    assert rec.snap == tuned and rec.snap.rescore
    calls = []
    scorer = rec.line_scorer

    def counting(logits):  # every decoded line gets a scorer of its own frames
        calls.append(logits.shape)
        return scorer(logits)

    rec.line_scorer = counting
    preds = rec.recognize(test_images)
    assert len(preds) == len(test_images) and all(isinstance(p.text, str) for p in preds)
    assert calls and len(calls) == sum(bool(p.text) for p in preds)
    # the CLI reads the same tuned record: predict with that LM and --lexicon runs and prints one line per image
    out = run("predict", "--model", model_file, *test_images, "--decoder", "beam", "--lm", path, "--lexicon",
              "--no-warm-up")
    assert out.exit_code == 0, out.output
    assert len([x for x in out.output.splitlines() if x.strip()]) == len(test_images)


def test_evaluate_with_beam_lm_and_lexicon_end_to_end(model_file, line_store, lm_file, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", "--model", model_file, "--store", line_store, "--split", "test", "--out", out,
                 "--decoder", "beam", "--beam-width", "3", "--lm", lm_file, "--lexicon", "--worst", "2")
    assert result.exit_code == 0, result.output
    assert "beam 3 · LM weight 0.5 · lexicon on" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lm"] is True and metrics["lm_weight"] == 0.5 and metrics["lexicon"] == SnapSettings().to_dict()
    assert "lexicon" in (out / "metrics.md").read_text()
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(TEXTS)

    # A tuned LM that chose the lexicon turns it on without --lexicon; --no-lexicon turns it off.
    tuned = write_tuned(lm_file, {"lm_weight": 0.2, "lexicon": True, "snap": {"min_score": 70.0}},
                        tmp_path / "tuned.json")
    result = run("evaluate", "--model", model_file, "--store", line_store, "--split", "test", "--out", tmp_path / "t",
                 "--decoder", "beam", "--beam-width", "3", "--lm", tuned)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["lm_weight"] == 0.2 and metrics["lexicon"]["min_score"] == 70.0
    result = run("evaluate", "--model", model_file, "--store", line_store, "--split", "test", "--out", tmp_path / "n",
                 "--decoder", "beam", "--beam-width", "3", "--lm", tuned, "--no-lexicon", "--lm-weight", "0.7")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "n" / "metrics.json").read_text())
    assert metrics["lm_weight"] == 0.7 and metrics["lexicon"] is None


def test_train_writes_the_labels_plus_address_corpus_lm(line_store, tmp_path):
    from vhrmodel.lm import ADDRESS_CORPUS, LABELS_SHARE, LM_ORDER, write_store_lm

    store = open_store(line_store)
    built = read_char_lm(write_store_lm(store, tmp_path / "charlm.json")).meta["built"]
    assert [s["name"] for s in built["sources"]] == ["training labels", ADDRESS_CORPUS]
    assert built["sources"][0]["lines"] == len(TEXTS) and built["labels_share"] == LABELS_SHARE
    from vhrdata.synth.addresses import load_gazetteer

    g = load_gazetteer()
    units = sum(len(ws) for by_d in g.legacy.values() for ws in by_d.values()) + sum(map(len, g.modern.values()))
    assert built["sources"][1]["lines"] == 2 * units and built["order"] == LM_ORDER == 8
    alone = read_char_lm(write_store_lm(store, tmp_path / "labels.json", address_lm=False, order=3))
    assert [s["name"] for s in alone.meta["built"]["sources"]] == ["training labels"]
    assert alone.order == 3


def test_build_lm_rebuilds_a_run_lm_from_the_training_labels_only(line_store, tmp_path):
    out = tmp_path / "charlm.json"
    result = CliRunner().invoke(main, ["build-lm", "--store", str(line_store), "--out", str(out), "--order", "6",
                                       "--no-address-lm"])
    assert result.exit_code == 0, result.output
    lm = read_char_lm(out)
    assert lm.order == 6 and [s["name"] for s in lm.meta["built"]["sources"]] == ["training labels"]
    assert lm.digit_class and lm.meta["built"]["digit_class"]  # the default
    plain = CliRunner().invoke(main, ["build-lm", "--store", str(line_store), "--out", str(tmp_path / "plain.json"),
                                      "--order", "3", "--no-digit-class", "--no-address-lm"])
    assert plain.exit_code == 0 and not read_char_lm(tmp_path / "plain.json").digit_class
    assert lm.meta["built"]["sources"][0]["lines"] == len(TEXTS)
    assert f"order 6, digits as one class, training labels ({len(TEXTS)} lines)" in result.output
    nowhere = CliRunner().invoke(main, ["build-lm", "--store", str(line_store), "--out",
                                        str(tmp_path / "missing" / "lm.json"), "--order", "2"])
    assert nowhere.exit_code == 1 and "cannot write" in nowhere.output and "Traceback" not in nowhere.output
    for split in ("val", "test", "test-camera"):
        refused = CliRunner().invoke(main, ["build-lm", "--store", str(line_store), "--out", str(tmp_path / "x.json"),
                                            "--split", split])
        assert refused.exit_code == 2 and "training split" in refused.output, refused.output
        assert not (tmp_path / "x.json").exists()
