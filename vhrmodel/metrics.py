"""Recognition metrics: CER, WER, SER, diacritic-blind CER and per-writer CER.

Rates are totals over the corpus: CER = sum of edit distances / sum of reference lengths,
not a mean of per-line ratios (which would over-weight short lines). References and
hypotheses are both normalised (`normalize_text`: NFC, one space between words) before they
are compared, so a decoder's NFD output or a doubled space is never counted against, or for, it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import Hashable, Sequence

import numpy as np

from vhrdata.text import strip_diacritics

_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFC, whitespace runs as one space, no leading or trailing space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def align(ref: str, hyp: str) -> list[tuple[str, str, str]]:
    """A minimal edit alignment of `hyp` against `ref`, as (op, ref_char, hyp_char) steps.

    op is "equal", "substitute", "delete" (a `ref` character the hypothesis lacks; hyp_char is
    "") or "insert" (a hypothesis character `ref` lacks; ref_char is ""). Its cost is the
    `edit_distance`.

    Example:
        >>> [op for op, _, _ in align("hoà", "hòa")]
        ['equal', 'substitute', 'substitute']
    """
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    steps = []
    i, j = n, m
    while i or j:
        if i and j and d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            steps.append(("equal" if ref[i - 1] == hyp[j - 1] else "substitute", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i, j] == d[i - 1, j] + 1:
            steps.append(("delete", ref[i - 1], ""))
            i -= 1
        else:
            steps.append(("insert", "", hyp[j - 1]))
            j -= 1
    return steps[::-1]


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit insert, delete, substitute) between two sequences.

    Uses the bit-parallel algorithm of Myers/Hyyrö on Python integers: O(len(b)) big-int
    operations for any `len(a)`, a few microseconds for a 100-character line.

    Example:
        >>> edit_distance("hoà", "hòa")
        2
        >>> edit_distance("ba nhà".split(), "ba nha".split())
        1

    Reference:
        Hyyrö, "Explaining and Extending the Bit-parallel Approximate String Matching
        Algorithm of Myers", 2001.
    """
    if len(a) < len(b):
        a, b = b, a  # the shorter one is the text: fewer iterations
    m = len(a)
    if not b:
        return m
    masks: dict[Hashable, int] = {}
    for i, item in enumerate(a):
        masks[item] = masks.get(item, 0) | (1 << i)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    vp, vn, score = full, 0, m
    for item in b:
        pm = masks.get(item, 0)
        x = pm | vn
        d0 = (((x & vp) + vp) ^ vp) | x
        hp = vn | ~(d0 | vp)
        hn = vp & d0
        if hp & top:
            score += 1
        elif hn & top:
            score -= 1
        x = ((hp << 1) | 1) & full
        vn = x & d0
        vp = ((hn << 1) & full) | (~(x | d0) & full)
    return score


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"`refs` and `hyps` must have the same length. Received: {len(refs)} refs, {len(hyps)} hyps")


def _rate(errors: int, total: int) -> float:
    if total == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / total


def char_errors(refs: Sequence[str], hyps: Sequence[str]) -> tuple[int, int]:
    """(total character edit distance, total reference characters)."""
    _check_pairs(refs, hyps)
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)), sum(len(r) for r in refs)


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Character error rate: total edit distance / total reference characters.

    Example:
        >>> cer(["hoà bình", "ab"], ["hòa bình", "ab"])   # 2 edits over 10 characters
        0.2
    """
    return _rate(*char_errors(refs, hyps))


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate over whitespace-separated words: total word edits / total reference words.

    Example:
        >>> wer(["phường 3 quận 1"], ["phuờng 3 quận 1"])
        0.25
    """
    _check_pairs(refs, hyps)
    ref_words = [r.split() for r in refs]
    errors = sum(edit_distance(r, h.split()) for r, h in zip(ref_words, hyps))
    return _rate(errors, sum(len(r) for r in ref_words))


def ser(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Sequence (line) error rate: share of lines that are not exactly right.

    Example:
        >>> ser(["a", "b", "c", "d"], ["a", "x", "c", "d"])
        0.25
    """
    _check_pairs(refs, hyps)
    if not refs:
        return 0.0
    return sum(r != h for r, h in zip(refs, hyps)) / len(refs)


def diacritic_blind_cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """CER after removing tone and vowel marks and mapping đ→d on both sides.

    The gap between `cer` and this is the share of errors that are only diacritics.

    Example:
        >>> diacritic_blind_cer(["hoà bình"], ["hòa binh"])
        0.0
    """
    _check_pairs(refs, hyps)
    return cer([strip_diacritics(r) for r in refs], [strip_diacritics(h) for h in hyps])


def per_writer_cer(refs: Sequence[str], hyps: Sequence[str], writers: Sequence[str | None]) -> dict[str, dict]:
    """CER per writer: {writer: {"cer", "errors", "chars", "lines"}}; a None writer is grouped as "None".

    Example:
        >>> per_writer_cer(["ab", "cd"], ["ab", "c"], ["w1", "w2"])["w2"]["cer"]
        0.5
    """
    _check_pairs(refs, hyps)
    if len(writers) != len(refs):
        raise ValueError(f"`writers` must have one entry per line. Received: {len(writers)} writers, {len(refs)} lines")
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r, h, w in zip(refs, hyps, writers):
        g = groups[str(w)]
        g[0] += edit_distance(r, h)
        g[1] += len(r)
        g[2] += 1
    return {
        w: {"cer": _rate(e, c), "errors": e, "chars": c, "lines": n}
        for w, (e, c, n) in sorted(groups.items())
    }


def evaluate_texts(refs: Sequence[str], hyps: Sequence[str], writers: Sequence[str | None] | None = None) -> dict:
    """All metrics in one JSON-able dict.

    Returns:
        {"lines", "chars", "words", "char_errors", "word_errors", "line_errors", "cer", "wer",
        "ser", "cer_no_diacritics", "per_writer" (only when `writers` is given)}.

    Example:
        >>> m = evaluate_texts(["hoà bình"], ["hòa bình"])
        >>> (m["cer"], m["cer_no_diacritics"], m["wer"], m["ser"])
        (0.25, 0.0, 0.5, 1.0)
    """
    _check_pairs(refs, hyps)
    refs = [normalize_text(r) for r in refs]
    hyps = [normalize_text(h) for h in hyps]
    char_err, chars = char_errors(refs, hyps)
    ref_words = [r.split() for r in refs]
    word_err = sum(edit_distance(r, h.split()) for r, h in zip(ref_words, hyps))
    words = sum(len(r) for r in ref_words)
    line_err = sum(r != h for r, h in zip(refs, hyps))
    result = {
        "lines": len(refs),
        "chars": chars,
        "words": words,
        "char_errors": char_err,
        "word_errors": word_err,
        "line_errors": line_err,
        "cer": _rate(char_err, chars),
        "wer": _rate(word_err, words),
        "ser": line_err / len(refs) if refs else 0.0,
        "cer_no_diacritics": diacritic_blind_cer(refs, hyps),
    }
    if writers is not None:
        result["per_writer"] = per_writer_cer(refs, hyps, writers)
    return result


def bootstrap_cer_interval(refs: Sequence[str], hyps: Sequence[str], level: float = 0.95, resamples: int = 2000,
                           seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the corpus CER, resampling whole lines.

    Example:
        >>> low, high = bootstrap_cer_interval(["abc", "abd"] * 20, ["abc", "abc"] * 20)
        >>> low <= 1 / 6 <= high
        True
    """
    _check_pairs(refs, hyps)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1). Received: level={level}")
    if not refs:
        return (0.0, 0.0)
    errors = np.array([edit_distance(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps)], np.float64)
    chars = np.array([len(normalize_text(r)) for r in refs], np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(refs), size=(resamples, len(refs)))
    rates = errors[idx].sum(axis=1) / np.maximum(chars[idx].sum(axis=1), 1)
    alpha = (1 - level) / 2
    return float(np.quantile(rates, alpha)), float(np.quantile(rates, 1 - alpha))
