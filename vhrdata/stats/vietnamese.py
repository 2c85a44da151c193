"""Vietnamese label analysis: tones per syllable, vowel diacritics, tone-placement style.

Tone-mark errors dominate the character error rate on Vietnamese handwriting, so the report shows
how each split is spread over the six tones and the vowel diacritics. The unit for tones is the
syllable (a run of letters): "Nguyễn" is one ngã syllable, whereas counting vowel letters would
credit it with two extra ngang vowels.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Iterable

from vhrdata.text import TONE_NAMES, tone_of, unify_tone_placement, vowel_diacritic_of

VOWEL_DIACRITICS = ("â", "ê", "ô", "ă", "ơ", "ư", "đ")
# Syllables with two different tone marks are foreign words or label mistakes.
MIXED_TONE = "mixed"

_WORD = re.compile(r"[^\W\d_]+")


def words_of(text: str) -> list[str]:
    """The letter runs of `text` (NFC), the unit the tone statistics count."""
    return _WORD.findall(unicodedata.normalize("NFC", text))


def syllable_tone(word: str) -> str | None:
    """Tone name of one syllable ('ngang' when unmarked), 'mixed' for two tones, None without vowels."""
    tones = set()
    has_vowel = False
    for ch in word:
        t = tone_of(ch)
        if t is None:
            continue
        has_vowel = True
        if t != "ngang":
            tones.add(t)
    if not has_vowel:
        return None
    if not tones:
        return "ngang"
    return tones.pop() if len(tones) == 1 else MIXED_TONE


def tone_counts(texts: Iterable[str]) -> dict[str, int]:
    """Syllables per tone over `texts`, keyed ngang, huyền, sắc, hỏi, ngã, nặng (and 'mixed' if any)."""
    counts: Counter = Counter()
    for text in texts:
        for word in words_of(text):
            tone = syllable_tone(word)
            if tone is not None:
                counts[tone] += 1
    out = {name: counts.get(name, 0) for name in TONE_NAMES}
    if counts.get(MIXED_TONE):
        out[MIXED_TONE] = counts[MIXED_TONE]
    return out


def vowel_diacritic_counts(texts: Iterable[str]) -> dict[str, int]:
    """Letters carrying each vowel diacritic (â ê ô ă ơ ư) and đ, case-folded, any tone."""
    counts: Counter = Counter()
    for text in texts:
        for ch in unicodedata.normalize("NFC", text):
            d = vowel_diacritic_of(ch)
            if d is not None:
                counts[d] += 1
    return {d: counts.get(d, 0) for d in VOWEL_DIACRITICS}


def tone_placement_styles(texts: Iterable[str], *, max_examples: int = 8) -> dict:
    """Count open-syllable oa/oe/uy words by where their tone sits: "old" (hòa) or "new" (hoà).

    Only words whose two placements differ are counted; pass the raw labels, since cleaning
    unifies the placement.

    Returns:
        {"old": n, "new": n, "examples": {"old": [...], "new": [...]}}, examples being distinct words.
    """
    counts = {"old": 0, "new": 0}
    examples: dict[str, list[str]] = {"old": [], "new": []}
    for text in texts:
        for word in words_of(text):
            new = unify_tone_placement(word, "new")
            old = unify_tone_placement(word, "old")
            if new == old:
                continue
            style = "new" if word == new else "old" if word == old else None
            if style is None:
                continue
            counts[style] += 1
            if len(examples[style]) < max_examples and word not in examples[style]:
                examples[style].append(word)
    return {**counts, "examples": examples}
