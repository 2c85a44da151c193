import random

import pytest

from vhrmodel.metrics import (
    cer,
    diacritic_blind_cer,
    edit_distance,
    evaluate_texts,
    per_writer_cer,
    ser,
    wer,
)


def dp_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("kitten", "sitting", 3),
        ("hoà", "hòa", 2),  # tone on another vowel: two substitutions
        ("Hà Nội", "Ha Noi", 2),
        ("đường", "duong", 3),  # đ→d, ư→u, ờ→o
        ("ab", "ba", 2),
    ],
)
def test_edit_distance_hand_examples(a, b, expected):
    assert edit_distance(a, b) == expected
    assert edit_distance(b, a) == expected


def test_edit_distance_matches_dynamic_programming_on_random_strings():
    rng = random.Random(0)
    alphabet = "aàáạăâđeêôơư "
    for _ in range(500):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        assert edit_distance(a, b) == dp_distance(a, b), (a, b)


def test_edit_distance_on_word_lists():
    assert edit_distance("số 12 phố Huế".split(), "số 12 phố Hue".split()) == 1
    assert edit_distance(["a", "b"], ["b"]) == 1


def test_cer_is_total_errors_over_total_chars_not_mean_of_ratios():
    refs = ["a", "abcdefghij"]
    hyps = ["b", "abcdefghij"]
    # mean of per-line ratios would be (1/1 + 0/10) / 2 = 0.5
    assert cer(refs, hyps) == pytest.approx(1 / 11)


def test_tone_only_errors_count_in_cer_but_not_in_diacritic_blind_cer():
    refs = ["hoà bình", "Đường Lê Lợi"]
    hyps = ["hòa bính", "Duong Le Loi"]
    # "hòa bính": 3 substitutions (o/ò, à/a, ì/í); "Duong Le Loi": Đ,ư,ờ,ê,ợ = 5
    assert cer(refs, hyps) == pytest.approx(8 / 20)
    assert diacritic_blind_cer(refs, hyps) == 0.0


def test_diacritic_blind_cer_still_counts_letter_errors():
    assert diacritic_blind_cer(["phường"], ["phướng"]) == 0.0
    assert diacritic_blind_cer(["phường"], ["phương x"]) == pytest.approx(2 / 6)


def test_wer_and_ser():
    refs = ["phường 3 quận 1", "hà nội", "huế"]
    hyps = ["phuờng 3 quận", "hà nội", "hue"]
    # line 1: one substitution + one deletion; line 3: one substitution; 7 reference words
    assert wer(refs, hyps) == pytest.approx(3 / 7)
    assert ser(refs, hyps) == pytest.approx(2 / 3)


def test_empty_inputs_and_mismatched_lengths():
    assert cer([], []) == 0.0
    assert ser([], []) == 0.0
    assert cer([""], ["x"]) == float("inf")
    with pytest.raises(ValueError, match="same length"):
        cer(["a"], [])


def test_per_writer_cer_groups_lines():
    result = per_writer_cer(["abcd", "ab", "xy"], ["abcd", "a", "x"], ["w1", "w1", None])
    assert result["w1"] == {"cer": pytest.approx(1 / 6), "errors": 1, "chars": 6, "lines": 2}
    assert result["None"]["cer"] == pytest.approx(0.5)


def test_evaluate_texts_returns_every_metric():
    refs = ["hoà bình", "quận 1", "huế"]
    hyps = ["hòa bình", "quận 1", "huê"]
    m = evaluate_texts(refs, hyps, writers=["a", "b", "a"])
    assert m["lines"] == 3
    assert m["chars"] == 8 + 6 + 3
    assert m["char_errors"] == 3
    assert m["cer"] == pytest.approx(3 / 17)
    assert m["wer"] == pytest.approx(2 / 5)
    assert m["ser"] == pytest.approx(2 / 3)
    assert m["cer_no_diacritics"] == 0.0
    assert m["per_writer"]["a"]["errors"] == 3
    assert m["per_writer"]["b"]["cer"] == 0.0
    assert "per_writer" not in evaluate_texts(refs, hyps)
