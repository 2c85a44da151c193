import unicodedata

import pytest

from vhrdata.text import (
    CleanSettings, clean_text, strip_diacritics, tone_of, unify_tone_placement, vowel_diacritic_of,
)


@pytest.mark.parametrize(
    "word,new,old",
    [
        ("hòa", "hoà", "hòa"), ("hoà", "hoà", "hòa"), ("thủy", "thuỷ", "thủy"), ("thuỷ", "thuỷ", "thủy"),
        ("Khỏe", "Khoẻ", "Khỏe"), ("Hòe", "Hoè", "Hòe"), ("Thúy", "Thuý", "Thúy"),
        # closed syllables and marked vowels have one placement in both styles
        ("hoàng", "hoàng", "hoàng"), ("người", "người", "người"), ("thuở", "thuở", "thuở"),
        ("Nguyễn", "Nguyễn", "Nguyễn"), ("quý", "quý", "quý"), ("quỳnh", "quỳnh", "quỳnh"),
        ("già", "già", "già"), ("gìn", "gìn", "gìn"), ("giữ", "giữ", "giữ"), ("hưu", "hưu", "hưu"),
        ("mái", "mái", "mái"), ("khuya", "khuya", "khuya"),
        ("café", "café", "café"),  # two vowel groups: not a Vietnamese syllable, untouched
    ],
)
def test_tone_placement(word, new, old):
    assert unify_tone_placement(word, "new") == new
    assert unify_tone_placement(word, "old") == old


def test_tone_placement_keeps_case_and_punctuation():
    assert unify_tone_placement("Khánh Hòa, THỦY 12/3", "new") == "Khánh Hoà, THUỶ 12/3"


def test_clean_text_nfd_to_nfc_and_whitespace_and_controls():
    raw = unicodedata.normalize("NFD", "  Số 12\u200b  đường\tHòa Bình\x07 ")
    out = clean_text(raw)
    assert out == "Số 12 đường Hoà Bình"
    assert unicodedata.is_normalized("NFC", out)


def test_clean_rules_can_be_switched_off():
    raw = "  a\u200b  b  "
    assert clean_text(raw, CleanSettings(whitespace=False, control_chars=False)) == raw
    assert clean_text("hòa", CleanSettings(tone_style="keep")) == "hòa"
    nfd = unicodedata.normalize("NFD", "hòa")
    assert clean_text(nfd, CleanSettings(nfc=False, tone_style="keep")) == nfd


def test_clean_settings_validation():
    with pytest.raises(ValueError, match="tone_style"):
        CleanSettings(tone_style="middle")
    with pytest.raises(ValueError, match="nfc=False"):
        CleanSettings(nfc=False, tone_style="new")


def test_diacritic_helpers():
    assert strip_diacritics("Đường Huỳnh Thúc Kháng, Ô Chợ Dừa") == "Duong Huynh Thuc Khang, O Cho Dua"
    assert [tone_of(c) for c in "aàáảãạb"] == ["ngang", "huyền", "sắc", "hỏi", "ngã", "nặng", None]
    assert vowel_diacritic_of("ấ") == "â" and vowel_diacritic_of("Ợ") == "ơ"
    assert vowel_diacritic_of("đ") == "đ" and vowel_diacritic_of("á") is None


@pytest.mark.parametrize("text,visible", [
    ("\u0301\u0303", False), ("\u200b\u200d\ufeff", False), (" \u3000\u2028", False), ("", False),
    ("a", True), ("\u0301a", True), (".", True), ("1", True), ("₫", True),
])
def test_has_visible_text(text, visible):
    from vhrdata.text import has_visible_text

    assert has_visible_text(text) is visible
