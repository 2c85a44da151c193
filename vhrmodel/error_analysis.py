"""Vietnamese error analysis: tone-mark and vowel-diacritic confusions, đ/d, CER per character class.

CER says how many characters are wrong; this module says which Vietnamese marks are read as which.
Every reference/hypothesis pair is normalised (`metrics.normalize_text`) and aligned character by
character with `metrics.align`; the analysis then reads the aligned steps:

- **Tones.** For each aligned pair (a match or a substitution) whose reference character is a
  Vietnamese vowel letter and whose hypothesis character is a vowel letter of the same base (a, e,
  i, o, u, y; case ignored), the pair adds one to a 6 × 6 matrix of reference tone × hypothesis
  tone (ngang, huyền, sắc, hỏi, ngã, nặng). "hỏi" read as "hõi" is one hỏi → ngã confusion;
  "ấ" read as "ả" is one sắc → hỏi confusion (and one circumflex → none below). A pair whose
  hypothesis is another letter ("a" read as "o") or missing is a character error, not a tone
  confusion, and is left out. From the matrix: the tone error rate (off-diagonal / all pairs),
  tones dropped (a toned vowel read as ngang), added (ngang read as toned) and changed (one tone
  read as another), and the most frequent confusions.
- **Vowel diacritics.** The same pairs in a 4 × 4 matrix over none, circumflex (â ê ô), breve (ă)
  and horn (ơ ư).
- **đ/d.** Aligned pairs whose reference and hypothesis are both d or đ (case ignored) in a 2 × 2
  matrix: "đường" read as "dường" is one đ → d.
- **Character classes.** Digits (Unicode Nd), letters (L*), punctuation (P* and symbols S*, so
  "/" and "+" count), spaces and other characters. A class's errors are the substitutions and
  deletions of its reference characters plus the insertions of its characters; its CER is
  errors / reference characters of the class. "Số 12" read as "Số 13" has digits CER 0.5 and
  letters CER 0.

Rates whose denominator is zero are None (JSON null), never NaN or infinity. Numpy and the
standard library only: no Keras.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

import numpy as np

from vhrdata.text import TONE_NAMES, VOWEL_DIACRITIC_NAMES, decompose_vowel
from vhrmodel.metrics import _check_pairs, align, normalize_text

CHAR_CLASSES = ("digit", "letter", "punctuation", "space", "other")
D_LETTERS = ("d", "đ")
TOP_CONFUSIONS = 5


def char_class(ch: str) -> str:
    """The class of one character: "digit", "letter", "punctuation", "space" or "other".

    Example:
        >>> [char_class(c) for c in "Đ7/ ,"]
        ['letter', 'digit', 'punctuation', 'space', 'punctuation']
    """
    if ch.isspace():
        return "space"
    category = unicodedata.category(ch)
    if category == "Nd":
        return "digit"
    if category[0] == "L":
        return "letter"
    if category[0] in "PS":
        return "punctuation"
    return "other"


def _rate_or_none(errors: int, total: int) -> float | None:
    return errors / total if total else None


def _confusion_summary(matrix: np.ndarray, labels: Sequence[str], top: int) -> dict:
    """Counts, error rate and the most frequent off-diagonal cells of a ref × hyp matrix.

    Label 0 is the unmarked class (ngang, none): "dropped" counts a marked reference read unmarked,
    "added" an unmarked one read marked, "changed" one mark read as another.
    """
    total = int(matrix.sum())
    errors = total - int(np.trace(matrix))
    cells = [(int(matrix[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels))
             if i != j and matrix[i, j]]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return {
        "labels": list(labels),
        "matrix": matrix.astype(int).tolist(),
        "pairs": total,
        "errors": errors,
        "error_rate": _rate_or_none(errors, total),
        "dropped": int(matrix[1:, 0].sum()),
        "added": int(matrix[0, 1:].sum()),
        "changed": errors - int(matrix[1:, 0].sum()) - int(matrix[0, 1:].sum()),
        "top_confusions": [{"ref": labels[i], "hyp": labels[j], "count": n} for n, i, j in cells[:top]],
    }


def vietnamese_error_analysis(refs: Sequence[str], hyps: Sequence[str], top: int = TOP_CONFUSIONS) -> dict:
    """Tone, vowel-diacritic and đ/d confusions and CER per character class over a corpus.

    Args:
        refs: reference texts.
        hyps: hypothesis texts, one per reference. Both are normalised with `normalize_text`.
        top: how many of the most frequent confusions to list per matrix.

    Returns:
        A JSON-able dict:

        - "tones" and "vowel_diacritics": {"labels", "matrix" (rows: reference, columns:
          hypothesis), "pairs", "errors", "error_rate", "dropped", "added", "changed",
          "top_confusions": [{"ref", "hyp", "count"}, ...]};
        - "d_stroke": {"labels": ["d", "đ"], "matrix", "pairs", "errors", "error_rate",
          "stroke_d_as_d" (đ read as d), "d_as_stroke_d" (d read as đ)};
        - "char_classes": {class: {"chars", "errors", "substitutions", "deletions",
          "insertions", "cer"}} for each of `CHAR_CLASSES`.

        Rates with a zero denominator are None.

    Raises:
        ValueError: `refs` and `hyps` differ in length.

    Example:
        >>> a = vietnamese_error_analysis(["hỏi đường", "Số 12"], ["hõi dường", "Số 13"])
        >>> a["tones"]["top_confusions"], a["d_stroke"]["stroke_d_as_d"]
        ([{'ref': 'hỏi', 'hyp': 'ngã', 'count': 1}], 1)
        >>> a["char_classes"]["digit"]["cer"], a["char_classes"]["letter"]["cer"]
        (0.5, 0.2)
    """
    _check_pairs(refs, hyps)
    tones = np.zeros((len(TONE_NAMES), len(TONE_NAMES)), np.int64)
    marks = np.zeros((len(VOWEL_DIACRITIC_NAMES), len(VOWEL_DIACRITIC_NAMES)), np.int64)
    d_stroke = np.zeros((2, 2), np.int64)
    classes = {c: {"chars": 0, "errors": 0, "substitutions": 0, "deletions": 0, "insertions": 0}
               for c in CHAR_CLASSES}
    tone_index = {t: i for i, t in enumerate(TONE_NAMES)}
    mark_index = {m: i for i, m in enumerate(VOWEL_DIACRITIC_NAMES)}
    for ref, hyp in zip(refs, hyps):
        ref, hyp = normalize_text(ref), normalize_text(hyp)
        steps = [("equal", c, c) for c in ref] if ref == hyp else align(ref, hyp)
        for op, r, h in steps:
            if op == "insert":
                counts = classes[char_class(h)]
                counts["insertions"] += 1
                counts["errors"] += 1
                continue
            counts = classes[char_class(r)]
            counts["chars"] += 1
            if op == "delete":
                counts["deletions"] += 1
                counts["errors"] += 1
                continue
            if op == "substitute":
                counts["substitutions"] += 1
                counts["errors"] += 1
            rv, hv = decompose_vowel(r), decompose_vowel(h)
            if rv is not None and hv is not None and rv[0] == hv[0]:
                marks[mark_index[rv[1]], mark_index[hv[1]]] += 1
                tones[tone_index[rv[2]], tone_index[hv[2]]] += 1
            elif r.lower() in D_LETTERS and h.lower() in D_LETTERS:
                d_stroke[D_LETTERS.index(r.lower()), D_LETTERS.index(h.lower())] += 1
    d_pairs = int(d_stroke.sum())
    d_errors = int(d_stroke[0, 1] + d_stroke[1, 0])
    return {
        "tones": _confusion_summary(tones, TONE_NAMES, top),
        "vowel_diacritics": _confusion_summary(marks, VOWEL_DIACRITIC_NAMES, top),
        "d_stroke": {
            "labels": list(D_LETTERS),
            "matrix": d_stroke.astype(int).tolist(),
            "pairs": d_pairs,
            "errors": d_errors,
            "error_rate": _rate_or_none(d_errors, d_pairs),
            "stroke_d_as_d": int(d_stroke[1, 0]),
            "d_as_stroke_d": int(d_stroke[0, 1]),
        },
        "char_classes": {c: {**v, "cer": _rate_or_none(v["errors"], v["chars"])} for c, v in classes.items()},
    }
