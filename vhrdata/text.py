"""Label cleaning and Vietnamese text helpers.

Vietnamese letters carry up to two marks: a vowel diacritic (â ê ô ă ơ ư, and đ) and one of six tones
(ngang = none, huyền, sắc, hỏi, ngã, nặng). Unicode lets the same word be written precomposed (NFC) or
decomposed (NFD), and Vietnamese orthography itself has two tone-placement styles for the open
syllables oa, oe, uy: the "old" style puts the tone on the first vowel (hòa, thủy), the "new" style on the
second (hoà, thuỷ). A recogniser must see one form of each word, so `clean_text` unifies both.

Default tone style: "new". In the 1,500 real Cinnamon lines, open-syllable oa/oe/uy words carry the tone
on the second vowel 186 times and on the first 114 times (qu- words, whose u belongs to the consonant, are
not counted); `vhrdata stats` reports the count for any dataset.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass

TONE_STYLES = ("new", "old", "keep")

# Combining marks, by role.
TONE_MARKS = {
    "\u0300": "huyền",  # grave
    "\u0301": "sắc",  # acute
    "\u0309": "hỏi",  # hook above
    "\u0303": "ngã",  # tilde
    "\u0323": "nặng",  # dot below
}
TONE_NAMES = ("ngang", "huyền", "sắc", "hỏi", "ngã", "nặng")
VOWEL_MARKS = {"\u0302": "circumflex", "\u0306": "breve", "\u031b": "horn"}

_VOWELS = set("aeiouy")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class CleanSettings:
    """Which cleaning rules run. Every rule is on by default.

    Args:
        nfc: normalise to Unicode NFC.
        tone_style: "new" (hoà, thuỷ), "old" (hòa, thủy) or "keep" (leave placement as written).
        whitespace: strip and collapse runs of whitespace into one space.
        control_chars: remove control and format characters (zero-width spaces, BOMs, ...).
    """

    nfc: bool = True
    tone_style: str = "new"
    whitespace: bool = True
    control_chars: bool = True

    def __post_init__(self):
        if self.tone_style not in TONE_STYLES:
            raise ValueError(f"tone_style must be one of {TONE_STYLES}. Received: tone_style={self.tone_style!r}")
        if self.tone_style != "keep" and not self.nfc:
            # Tone placement works on decomposed letters and recomposes them.
            raise ValueError("tone placement needs NFC normalisation. Received: nfc=False with tone_style="
                             f"{self.tone_style!r}; use tone_style='keep'")

    def to_dict(self) -> dict:
        return asdict(self)


def clean_text(text: str, settings: CleanSettings = CleanSettings()) -> str:
    """Clean one label according to `settings`."""
    if settings.control_chars:
        text = "".join(
            " " if ch in "\t\n\r\v\f" else ch
            for ch in text
            if ch in "\t\n\r\v\f" or unicodedata.category(ch) not in ("Cc", "Cf")
        )
    if settings.nfc:
        text = unicodedata.normalize("NFC", text)
    if settings.tone_style != "keep":
        text = unify_tone_placement(text, settings.tone_style)
    if settings.whitespace:
        text = _WHITESPACE.sub(" ", text).strip()
    return text


# Letters, digits, punctuation and symbols show ink; marks alone, spaces and format characters do not.
_VISIBLE_CATEGORIES = ("L", "N", "P", "S")


def has_visible_text(text: str) -> bool:
    """Whether `text` holds at least one character that shows ink.

    A label of only combining marks, zero-width or other format characters, or spaces is non-empty as a
    string but names nothing a recogniser could learn from a line image.
    """
    return any(unicodedata.category(ch)[0] in _VISIBLE_CATEGORIES for ch in text)


def _decompose(ch: str) -> tuple[str, str, str | None]:
    """(base letter, vowel marks, tone mark) of one precomposed character."""
    nfd = unicodedata.normalize("NFD", ch)
    base, marks, tone = nfd[0], "", None
    for m in nfd[1:]:
        if m in TONE_MARKS:
            tone = m
        else:
            marks += m
    return base, marks, tone


def _tone_index(letters: list[tuple[str, str, str | None]], style: str) -> int | None:
    """Index of the letter that should carry the tone in one syllable, or None if not a syllable."""
    lower = [b.lower() for b, _, _ in letters]
    vowel_pos = [i for i, b in enumerate(lower) if b in _VOWELS]
    if not vowel_pos:
        return None
    start, end = vowel_pos[0], vowel_pos[-1]
    if end - start + 1 != len(vowel_pos):
        return None  # two vowel groups: not one Vietnamese syllable (a foreign word), leave it
    # "qu" and "gi" before another vowel belong to the initial consonant.
    if start > 0 and end > start:
        if (lower[start - 1] == "q" and lower[start] == "u") or (
            lower[start - 1] == "g" and lower[start] == "i" and start == 1
        ):
            start += 1
    cluster = list(range(start, end + 1))
    marked = [i for i in cluster if letters[i][1]]  # â ê ô ă ơ ư
    if marked:
        return marked[-1]  # ươ → ơ, ưu → ư, uô → ô
    if len(cluster) == 1:
        return cluster[0]
    if len(cluster) >= 3:
        return cluster[1]
    has_final = end < len(letters) - 1
    if has_final:
        return cluster[1]
    pair = lower[cluster[0]] + lower[cluster[1]]
    if pair in ("oa", "oe", "uy"):
        return cluster[1] if style == "new" else cluster[0]
    return cluster[0]


def _retone_word(word: str, style: str) -> str:
    letters = [_decompose(ch) for ch in word]
    tones = [t for _, _, t in letters if t]
    if len(tones) != 1 or not all(b.isalpha() and b.isascii() or b in "đĐ" for b, _, _ in letters):
        return word
    target = _tone_index(letters, style)
    if target is None:
        return word
    out = []
    for i, (b, marks, _) in enumerate(letters):
        out.append(unicodedata.normalize("NFC", b + marks + (tones[0] if i == target else "")))
    return "".join(out)


_WORD = re.compile(r"[^\W\d_]+")


def unify_tone_placement(text: str, style: str = "new") -> str:
    """Move each syllable's tone mark to where `style` puts it ("new": hoà, thuỷ; "old": hòa, thủy).

    Words with no tone, more than one tone, or more than one vowel group are left as they are.
    """
    if style == "keep":
        return text
    if style not in TONE_STYLES:
        raise ValueError(f"style must be one of {TONE_STYLES}. Received: style={style!r}")
    return _WORD.sub(lambda m: _retone_word(m.group(0), style), unicodedata.normalize("NFC", text))


def strip_diacritics(text: str) -> str:
    """Remove tone and vowel marks and map đ→d, Đ→D: 'Đường Huỳnh' → 'Duong Huynh'."""
    nfd = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return unicodedata.normalize("NFC", "".join(c for c in nfd if c not in TONE_MARKS and c not in VOWEL_MARKS))


def tone_of(ch: str) -> str | None:
    """Tone name of a Vietnamese vowel letter ('ngang' if unmarked), None for non-vowels."""
    base, _, tone = _decompose(ch)
    if base.lower() not in _VOWELS:
        return None
    return TONE_MARKS[tone] if tone else "ngang"


# The twelve Vietnamese vowel letters as (base, vowel diacritic): a ă â e ê i o ô ơ u ư y.
VOWEL_DIACRITIC_NAMES = ("none", "circumflex", "breve", "horn")
_VOWEL_LETTERS = {
    ("a", "none"), ("a", "breve"), ("a", "circumflex"), ("e", "none"), ("e", "circumflex"), ("i", "none"),
    ("o", "none"), ("o", "circumflex"), ("o", "horn"), ("u", "none"), ("u", "horn"), ("y", "none"),
}


def decompose_vowel(ch: str) -> tuple[str, str, str] | None:
    """Split a Vietnamese vowel letter into (base letter, vowel diacritic, tone).

    The letter is decomposed with Unicode NFD; its combining marks are read as one tone (U+0300
    grave = huyền, U+0301 acute = sắc, U+0309 hook above = hỏi, U+0303 tilde = ngã, U+0323 dot
    below = nặng; none = ngang) and at most one vowel diacritic (U+0302 circumflex, U+0306 breve,
    U+031B horn; none = "none").

    Args:
        ch: one character, precomposed (NFC) or a base letter followed by its combining marks.

    Returns:
        (base, diacritic, tone): the base letter lower-cased ("a", "e", "i", "o", "u" or "y"),
        a name of `VOWEL_DIACRITIC_NAMES` and a name of `TONE_NAMES`; None when `ch` is not one of
        the twelve Vietnamese vowel letters (a ă â e ê i o ô ơ u ư y, either case) with at most one
        tone: consonants, digits, "đ", foreign letters such as "ö" or "ĕ", two tones.

    Example:
        >>> decompose_vowel("Ở")
        ('o', 'horn', 'hỏi')
        >>> decompose_vowel("a"), decompose_vowel("đ")
        (('a', 'none', 'ngang'), None)
    """
    nfd = unicodedata.normalize("NFD", ch)
    if not nfd:
        return None
    tones = [m for m in nfd[1:] if m in TONE_MARKS]
    others = [m for m in nfd[1:] if m not in TONE_MARKS]
    if len(tones) > 1 or len(others) > 1 or any(m not in VOWEL_MARKS for m in others):
        return None
    base = nfd[0].lower()
    diacritic = VOWEL_MARKS[others[0]] if others else "none"
    if (base, diacritic) not in _VOWEL_LETTERS:
        return None
    return base, diacritic, TONE_MARKS[tones[0]] if tones else "ngang"


def vowel_diacritic_of(ch: str) -> str | None:
    """The letter with its vowel diacritic but without tone ('ấ' → 'â', 'đ' → 'đ'), None when it has none."""
    if ch in "đĐ":
        return ch.lower()
    base, marks, _ = _decompose(ch)
    if not marks or base.lower() not in _VOWELS:
        return None
    return unicodedata.normalize("NFC", base.lower() + marks)
