"""The Vietnamese error analysis (vhrmodel.error_analysis) and its place in `vhrmodel evaluate`."""

import json
import unicodedata

import pytest

from vhrdata.text import TONE_NAMES, VOWEL_DIACRITIC_NAMES, decompose_vowel
from vhrmodel.error_analysis import char_class, vietnamese_error_analysis

T = {name: i for i, name in enumerate(TONE_NAMES)}
D = {name: i for i, name in enumerate(VOWEL_DIACRITIC_NAMES)}


def off_diagonal(matrix):
    return {(i, j): n for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j and n}


@pytest.mark.parametrize("ch,parts", [
    ("a", ("a", "none", "ngang")), ("à", ("a", "none", "huyền")), ("á", ("a", "none", "sắc")),
    ("ả", ("a", "none", "hỏi")), ("ã", ("a", "none", "ngã")), ("ạ", ("a", "none", "nặng")),
    ("ấ", ("a", "circumflex", "sắc")), ("ằ", ("a", "breve", "huyền")), ("Ợ", ("o", "horn", "nặng")),
    ("ữ", ("u", "horn", "ngã")), ("Ê", ("e", "circumflex", "ngang")), ("ỷ", ("y", "none", "hỏi")),
    ("o\u031b\u0309", ("o", "horn", "hỏi")),  # NFD input
    ("đ", None), ("d", None), ("b", None), ("7", None), (" ", None), ("", None),
    ("ö", None), ("ĕ", None), ("ư\u0301\u0300", None),  # foreign diacritic, impossible letter, two tones
])
def test_decompose_vowel(ch, parts):
    assert decompose_vowel(ch) == parts


def test_char_classes():
    assert [char_class(c) for c in "aĐữ09,./-+ "] == (
        ["letter"] * 3 + ["digit"] * 2 + ["punctuation"] * 5 + ["space"])


def test_hoi_read_as_nga_is_one_tone_confusion():
    a = vietnamese_error_analysis(["hỏi"], ["hõi"])
    tones = a["tones"]
    assert tones["pairs"] == 2  # ỏ and i
    assert tones["matrix"][T["hỏi"]][T["ngã"]] == 1 and tones["matrix"][T["ngang"]][T["ngang"]] == 1
    assert off_diagonal(tones["matrix"]) == {(T["hỏi"], T["ngã"]): 1}
    assert tones["errors"] == 1 and tones["error_rate"] == 0.5
    assert (tones["dropped"], tones["added"], tones["changed"]) == (0, 0, 1)
    assert tones["top_confusions"] == [{"ref": "hỏi", "hyp": "ngã", "count": 1}]
    assert a["vowel_diacritics"]["errors"] == 0 and a["vowel_diacritics"]["pairs"] == 2
    assert a["char_classes"]["letter"]["cer"] == pytest.approx(1 / 3)


def test_dropped_added_and_changed_tones():
    # á→a dropped, a→à added, ạ→á changed, ă→ắ adds a tone and keeps the breve
    a = vietnamese_error_analysis(["á", "a", "ạ", "ă"], ["a", "à", "á", "ắ"])
    tones = a["tones"]
    assert off_diagonal(tones["matrix"]) == {(T["sắc"], T["ngang"]): 1, (T["ngang"], T["huyền"]): 1,
                                             (T["nặng"], T["sắc"]): 1, (T["ngang"], T["sắc"]): 1}
    assert (tones["pairs"], tones["errors"], tones["dropped"], tones["added"], tones["changed"]) == (4, 4, 1, 2, 1)
    assert tones["top_confusions"][0] == {"ref": "ngang", "hyp": "huyền", "count": 1}  # ties: matrix order
    assert len(tones["top_confusions"]) == 4
    assert a["vowel_diacritics"]["matrix"][D["breve"]][D["breve"]] == 1 and a["vowel_diacritics"]["errors"] == 0


def test_vowel_diacritic_confusions_and_both_axes_of_one_letter():
    # ấ→ả: circumflex dropped and sắc read as hỏi; ơ→ô horn→circumflex; u→ư horn added; ă→â
    a = vietnamese_error_analysis(["ấ ơ u ă"], ["ả ô ư â"])
    marks = a["vowel_diacritics"]
    assert off_diagonal(marks["matrix"]) == {(D["circumflex"], D["none"]): 1, (D["horn"], D["circumflex"]): 1,
                                             (D["none"], D["horn"]): 1, (D["breve"], D["circumflex"]): 1}
    assert (marks["pairs"], marks["errors"], marks["dropped"], marks["added"], marks["changed"]) == (4, 4, 1, 1, 2)
    assert marks["error_rate"] == 1.0
    assert off_diagonal(a["tones"]["matrix"]) == {(T["sắc"], T["hỏi"]): 1}
    assert a["tones"]["error_rate"] == 0.25


def test_other_base_letter_or_missing_vowel_is_no_mark_confusion():
    # á→ó changes the base letter, ô is deleted: neither is a mark confusion; ư→ừ is one
    a = vietnamese_error_analysis(["á", "ô", "ư", "b"], ["ó", "", "ừ", "bc"])
    assert a["tones"]["pairs"] == 1 and a["vowel_diacritics"]["pairs"] == 1
    assert off_diagonal(a["tones"]["matrix"]) == {(T["ngang"], T["huyền"]): 1}
    assert a["char_classes"]["letter"] == {"chars": 4, "errors": 4, "substitutions": 2, "deletions": 1,
                                           "insertions": 1, "cer": 1.0}


def test_stroke_d_read_as_d():
    a = vietnamese_error_analysis(["đường"], ["dường"])
    d = a["d_stroke"]
    assert d["matrix"] == [[0, 0], [1, 0]]
    assert (d["stroke_d_as_d"], d["d_as_stroke_d"], d["pairs"], d["errors"], d["error_rate"]) == (1, 0, 1, 1, 1.0)
    assert a["tones"]["errors"] == 0 and a["tones"]["pairs"] == 2  # ư→ư, ờ→ờ


def test_d_read_as_stroke_d_ignores_case():
    d = vietnamese_error_analysis(["Dương Đông dd"], ["Đương đông dd"])["d_stroke"]
    assert d["matrix"] == [[2, 1], [0, 1]]
    assert (d["stroke_d_as_d"], d["d_as_stroke_d"], d["pairs"], d["errors"]) == (0, 1, 4, 1)
    assert d["error_rate"] == 0.25  # Đ→đ is a case error, not a stroke confusion


def test_cer_per_class_digits_and_letters():
    classes = vietnamese_error_analysis(["Số 12"], ["Số 13"])["char_classes"]
    assert classes["digit"] == {"chars": 2, "errors": 1, "substitutions": 1, "deletions": 0, "insertions": 0,
                                "cer": 0.5}
    assert classes["letter"]["cer"] == 0.0 and classes["letter"]["chars"] == 2
    assert classes["space"] == {"chars": 1, "errors": 0, "substitutions": 0, "deletions": 0, "insertions": 0,
                                "cer": 0.0}
    assert classes["punctuation"]["chars"] == 0 and classes["punctuation"]["cer"] is None


def test_insertions_count_for_the_inserted_character_class():
    classes = vietnamese_error_analysis(["P. 3"], ["P., 3"])["char_classes"]
    assert classes["punctuation"]["chars"] == 1 and classes["punctuation"]["insertions"] == 1
    assert classes["punctuation"]["cer"] == 1.0
    assert classes["digit"]["errors"] == classes["letter"]["errors"] == classes["space"]["errors"] == 0


def test_empty_hypothesis_is_all_deletions_and_no_confusion():
    a = vietnamese_error_analysis(["Hà Nội 1"], [""])
    assert a["tones"]["pairs"] == 0 and a["tones"]["error_rate"] is None and a["tones"]["top_confusions"] == []
    assert a["vowel_diacritics"]["error_rate"] is None and a["d_stroke"]["error_rate"] is None
    assert a["char_classes"]["letter"] == {"chars": 5, "errors": 5, "substitutions": 0, "deletions": 5,
                                           "insertions": 0, "cer": 1.0}
    assert a["char_classes"]["digit"]["cer"] == 1.0 and a["char_classes"]["space"]["deletions"] == 2


def test_empty_reference_has_insertions_but_no_rate():
    a = vietnamese_error_analysis(["", "  "], ["ả 1", ""])
    assert a["tones"]["pairs"] == 0
    assert a["char_classes"]["letter"] == {"chars": 0, "errors": 1, "substitutions": 0, "deletions": 0,
                                           "insertions": 1, "cer": None}
    assert a["char_classes"]["space"]["insertions"] == 1 and a["char_classes"]["digit"]["insertions"] == 1
    json.dumps(a, allow_nan=False)  # no NaN or infinity anywhere


def test_empty_corpus():
    a = vietnamese_error_analysis([], [])
    assert a["tones"]["matrix"] == [[0] * 6 for _ in range(6)] and a["tones"]["error_rate"] is None
    assert all(c["cer"] is None for c in a["char_classes"].values())


def test_nfd_input_and_extra_spaces_are_normalised_first():
    ref = unicodedata.normalize("NFD", "hỏi  đường ")
    a = vietnamese_error_analysis([ref], ["hỏi đường"])
    assert a["tones"]["errors"] == 0 and a["tones"]["pairs"] == 4
    assert all(c["errors"] == 0 for c in a["char_classes"].values())
    assert a["char_classes"]["letter"]["chars"] == 8 and a["char_classes"]["space"]["chars"] == 1
    nfd_hyp = vietnamese_error_analysis(["hỏi"], [unicodedata.normalize("NFD", "hõi")])["tones"]
    assert off_diagonal(nfd_hyp["matrix"]) == {(T["hỏi"], T["ngã"]): 1}


def test_uppercase_vowels_match_their_lowercase_base():
    a = vietnamese_error_analysis(["Ở ĐÂY"], ["ỡ đây"])
    assert off_diagonal(a["tones"]["matrix"]) == {(T["hỏi"], T["ngã"]): 1}
    assert a["tones"]["pairs"] == 3 and a["vowel_diacritics"]["matrix"][D["circumflex"]][D["circumflex"]] == 1
    assert a["d_stroke"]["matrix"] == [[0, 0], [0, 1]]
    assert a["char_classes"]["letter"]["errors"] == 4  # every letter's case differs


def test_top_confusions_are_sorted_by_count_and_capped():
    refs = ["hỏi"] * 3 + ["ngã"] * 2 + ["sắc"]
    hyps = ["hõi"] * 3 + ["ngả"] * 2 + ["sặc"]
    tones = vietnamese_error_analysis(refs, hyps, top=2)["tones"]
    assert tones["top_confusions"] == [{"ref": "hỏi", "hyp": "ngã", "count": 3},
                                       {"ref": "ngã", "hyp": "hỏi", "count": 2}]
    assert tones["errors"] == 6 and tones["changed"] == 6


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        vietnamese_error_analysis(["a"], [])


def test_summary_line():
    from vhrmodel.cli.evaluate import vietnamese_summary

    a = vietnamese_error_analysis(["hỏi đường số 12"], ["hõi dường số 13"])
    assert vietnamese_summary(a) == "tone errors 20.00% (hỏi→ngã 1) · vowel marks 0.00% · đ/d 1 · digits CER 50.00%"
    assert vietnamese_summary(vietnamese_error_analysis([""], [""])) == (
        "tone errors – · vowel marks – · đ/d 0 · digits CER –")


@pytest.fixture(scope="module")
def untrained_model(line_store, tmp_path_factory):
    """A tiny model with random weights and the store's charset and settings (no training)."""
    from vhrmodel_fixtures import untrained_tiny_model

    return untrained_tiny_model(line_store, tmp_path_factory.mktemp("analysis_model"))


def test_evaluate_writes_the_vietnamese_section(line_store, untrained_model, tmp_path):
    from click.testing import CliRunner

    from vhrmodel.cli import main

    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["evaluate", "--model", str(untrained_model), "--store", str(line_store),
                                       "--split", "test", "--out", str(out), "--worst", "0"])
    assert result.exit_code == 0, result.output
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    saved = json.loads(text)
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    expected = vietnamese_error_analysis([x["reference"] for x in lines], [x["prediction"] for x in lines])
    assert saved["vietnamese"] == json.loads(json.dumps(expected))
    # the class counts add up to the corpus totals
    classes = saved["vietnamese"]["char_classes"]
    assert sum(c["chars"] for c in classes.values()) == saved["chars"]
    assert sum(c["errors"] for c in classes.values()) == saved["char_errors"]
    from vhrmodel.cli.evaluate import vietnamese_summary

    assert vietnamese_summary(expected) in result.output.splitlines()
    md = (out / "metrics.md").read_text()
    for heading in ("## Vietnamese error analysis", "### Tone marks", "### Vowel diacritics", "### đ and d",
                    "### CER per character class"):
        assert heading in md
    assert "| reference \\ read as | ngang (a) | huyền (à) | sắc (á) | hỏi (ả) | ngã (ã) | nặng (ạ) |" in md
    assert "| digits | 4 |" in md  # "số 12", "ngõ 3", "Quận 7"
