"""CTC decoders (numpy): greedy, prefix beam search, and a character n-gram LM for shallow fusion.

All decoders take the model's raw logits [B, T, C] (class 0 = blank) and normalise them with
a log-softmax themselves. Beam search runs in log space: `keras.ops.ctc_decode(strategy=
"beam_search")` also wants logits, and was measured to return wrong beams when given softmax
probabilities, so never feed probabilities to either.

Confidence (both decoders): the CTC probability of the decoded text summed over all its
alignments, as a per-character geometric mean, `exp(log P(text | x) / max(1, len(text)))`,
in (0, 1]. It depends only on the text and the logits, so greedy and beam agree on it for the
same output.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

from vhrdata.charset import Charset

NEG_INF = -np.inf


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax in float32."""
    x = np.asarray(logits, dtype=np.float32)
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _as_charset(charset) -> Charset:
    return charset if isinstance(charset, Charset) else Charset(charset)


def _lengths(logits: np.ndarray, logit_lengths) -> np.ndarray:
    b, t = logits.shape[:2]
    if logit_lengths is None:
        return np.full(b, t, dtype=np.int64)
    lengths = np.asarray(logit_lengths, dtype=np.int64).reshape(-1)
    if lengths.shape[0] != b or (lengths < 0).any() or (lengths > t).any():
        raise ValueError(f"`logit_lengths` must hold one value in [0, {t}] per line. Received: {lengths.tolist()}")
    return lengths


def _check_logits(logits) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.ndim != 3:
        raise ValueError(f"`logits` must have shape [batch, frames, classes]. Received: shape={logits.shape}")
    return logits


def ctc_log_likelihood(log_probs: np.ndarray, labels: Sequence[Sequence[int]], logit_lengths=None) -> np.ndarray:
    """log P(labels[b] | x_b) under CTC, summed over alignments, for a batch.

    Args:
        log_probs: float [B, T, C] log-probabilities (blank = 0).
        labels: B sequences of 1-based class ids (no blanks).
        logit_lengths: int [B] valid frames, default T.

    Returns:
        float64 [B]; -inf where a label cannot be aligned in its frames.
    """
    log_probs = _check_logits(log_probs)
    lengths = _lengths(log_probs, logit_lengths)
    emit, skip, label_lens = _ctc_emissions(log_probs, labels)
    final, exact = _ctc_alpha_scaled(emit, skip, lengths)
    result = _ctc_end(final, label_lens)
    # Lines that underflowed in linear space, and any line found unalignable there (which may be an
    # underflow too), are computed again in log space: the result is exact either way.
    redo = ~exact | ~np.isfinite(result)
    if redo.any():
        result[redo] = _ctc_end(_ctc_alpha_log(emit[redo], skip[redo], lengths[redo]), label_lens[redo])
    result[lengths == 0] = np.where(label_lens[lengths == 0] == 0, 0.0, NEG_INF)
    return result


def _ctc_emissions(log_probs: np.ndarray, labels: Sequence[Sequence[int]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(emission log-probabilities of every state at every frame [B, T, S], float64, -inf for states
    past a line's own label; whether the skip transition s-2 -> s is allowed [B, S]; label lengths [B])
    of the CTC states blank, c1, blank, c2, ... blank."""
    b, t, _ = log_probs.shape
    label_lens = np.array([len(lab) for lab in labels], dtype=np.int64)
    s = 2 * int(label_lens.max(initial=0)) + 1
    ext = np.zeros((b, s), dtype=np.int64)
    for i, lab in enumerate(labels):
        ext[i, 1 : 2 * len(lab) : 2] = np.asarray(lab, dtype=np.int64)
    # The skip transition s-2 -> s is allowed into a character that differs from the previous one.
    skip = np.zeros((b, s), dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != 0) & (ext[:, 2:] != ext[:, :-2])
    valid = np.arange(s)[None, :] <= 2 * label_lens[:, None]
    emit = np.take_along_axis(log_probs, np.broadcast_to(ext[:, None, :], (b, t, s)), axis=2).astype(np.float64)
    emit += np.where(valid, 0.0, NEG_INF)[:, None, :]
    return emit, skip, label_lens


def _ctc_end(final: np.ndarray, label_lens: np.ndarray) -> np.ndarray:
    """log P(label) from the forward variables on each line's last frame: its last character or the blank after."""
    rows = np.arange(final.shape[0])
    end = 2 * label_lens
    result = final[rows, end]
    with_char = label_lens > 0
    result[with_char] = np.logaddexp(result[with_char], final[rows[with_char], end[with_char] - 1])
    return result


#: `_ctc_alpha_scaled` rescales every this many frames: few enough operations per frame, and a
#: line still underflows only where 8 frames in a row average emissions below about e**-88 each.
RESCALE_EVERY = 8


def _ctc_alpha_scaled(emit: np.ndarray, skip: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each line's log CTC forward variables [B, S] on its own last frame, whether each line stayed
    clear of underflow [B]), computed in linear space and rescaled to sum 1 every `RESCALE_EVERY`
    frames (the log scales summed aside): a few multiply-adds per state instead of two
    log-add-exps. A line whose states all underflowed to 0 is not exact (callers redo it in log space)."""
    b, t, s = emit.shape
    final = np.full((b, s), NEG_INF)
    ok = np.ones(b, dtype=bool)
    frames = int(lengths.max(initial=0))
    if frames == 0 or b == 0:
        return final, ok
    probs = np.exp(emit[:, :frames])
    skip_f = skip[:, 2:].astype(np.float64)
    ending = {int(k): np.nonzero(lengths == k)[0] for k in np.unique(lengths) if k > 0}
    alpha = np.zeros((b, s))
    alpha[:, 0] = probs[:, 0, 0]
    if s > 1:
        alpha[:, 1] = probs[:, 0, 1]
    log_scale = np.zeros(b)
    spare = np.empty_like(alpha)
    for step in range(frames):
        if step:
            np.copyto(spare, alpha)
            spare[:, 1:] += alpha[:, :-1]
            if s > 2:
                spare[:, 2:] += alpha[:, :-2] * skip_f
            spare *= probs[:, step]
            alpha, spare = spare, alpha
        last = step + 1 in ending
        if last or step % RESCALE_EVERY == 0:
            total = alpha.sum(axis=1)
            live = total > 0
            ok &= live | (lengths <= step)  # a line that has ended cannot underflow any more
            total[~live] = 1.0
            alpha /= total[:, None]
            log_scale += np.log(total)
            if last:
                lines = ending[step + 1]
                with np.errstate(divide="ignore"):
                    final[lines] = np.log(alpha[lines]) + log_scale[lines, None]
    return final, ok


def _ctc_alpha_log(emit: np.ndarray, skip: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`_ctc_alpha_scaled` in log space: exact for any line, slower."""
    b, t, s = emit.shape
    skip_penalty = np.where(skip, 0.0, NEG_INF)[:, 2:]
    alpha = np.full((b, s), NEG_INF)
    final = np.full((b, s), NEG_INF)  # each line's alpha on its own last frame
    if t:
        alpha[:, 0] = emit[:, 0, 0]
        if s > 1:
            alpha[:, 1] = emit[:, 0, 1]
    ending = {int(k): np.nonzero(lengths == k)[0] for k in np.unique(lengths)}  # frame count -> its lines
    if 1 in ending:
        final[ending[1]] = alpha[ending[1]]
    prev1 = np.full((b, s), NEG_INF)
    prev2 = np.full((b, s), NEG_INF)
    for step in range(1, int(lengths.max(initial=0))):  # later frames end no line
        prev1[:, 1:] = alpha[:, :-1]
        np.add(alpha[:, :-2], skip_penalty, out=prev2[:, 2:])
        with np.errstate(invalid="ignore"):
            alpha = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + emit[:, step]
        if step + 1 in ending:
            final[ending[step + 1]] = alpha[ending[step + 1]]
    return final


def ctc_confidences(log_probs, id_seqs, lengths) -> list[float]:
    """Per-line confidence (see module docstring) of 1-based id sequences under log-probs [B, T, C]."""
    ll = ctc_log_likelihood(log_probs, id_seqs, lengths)
    return [float(math.exp(v / max(1, len(ids)))) if np.isfinite(v) else 0.0 for v, ids in zip(ll, id_seqs)]


def ctc_greedy_decode(logits, charset, *, logit_lengths=None, return_confidence: bool = False):
    """Best-path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        logits: float [B, T, C] model output (logits or log-probabilities).
        charset: `vhrdata.charset.Charset` (or its characters as a str).
        logit_lengths: int [B] valid frames per line; default all T.
        return_confidence: also return one confidence per line (see module docstring).

    Returns:
        list of B strings, or (strings, confidences) with `return_confidence=True`.

    Example:
        >>> import numpy as np
        >>> eye = np.eye(3, dtype="float32") * 10   # classes: blank, "a", "b"
        >>> ctc_greedy_decode(eye[[1, 1, 0, 1, 2, 2]][None], "ab")
        ['aab']
    """
    charset = _as_charset(charset)
    logits = _check_logits(logits)
    lengths = _lengths(logits, logit_lengths)
    best = logits.argmax(axis=-1)
    keep = best != 0
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    keep &= np.arange(best.shape[1])[None, :] < lengths[:, None]
    id_seqs = [best[i][keep[i]].tolist() for i in range(best.shape[0])]
    texts = [charset.decode(ids) for ids in id_seqs]
    if not return_confidence:
        return texts
    return texts, ctc_confidences(log_softmax(logits), id_seqs, lengths)


class CharNgramLM:
    """Character n-gram language model with Witten-Bell interpolation.

    Fit it on TRAINING labels only (and text that is not from the evaluated lines, such as the
    address corpus, see `vhrmodel.lm`): fitting on validation or test text leaks the answers into
    the decoder. Lines are padded with `order - 1` start symbols and scored with an end symbol.
    Counts may be fractional (`fit(texts, weight=...)`), which is how `vhrmodel.lm` mixes sources.

    Args:
        order: int. n of the n-gram (context of `order - 1` characters).
        digit_class: see digits as one class: every digit is counted, and scored, as "0", in the
            predicted character and in the context alike. House and street numbers are arbitrary,
            so an LM that knows digits by name pulls a read number toward the numbers its text
            happened to hold; with the class it still knows where a number goes and how long it
            tends to be, and leaves which digits to the model.

    Attributes:
        meta: what the JSON file records beside the counts (`vhrmodel.lm`: "built", how it was
            made, and "tuned", decoding values chosen on val); {} for files without it.

    Example:
        >>> lm = CharNgramLM(order=3).fit(["hà nội", "hà nam"])
        >>> lm.log_prob("hà", " ") > lm.log_prob("hà", "x")
        True
    """

    BOS = "\x02"
    EOS = "\x03"

    #: Every digit reads as "0" when `digit_class` is on.
    DIGITS = str.maketrans("123456789", "000000000")

    def __init__(self, order: int = 5, digit_class: bool = False):
        if int(order) < 1:
            raise ValueError(f"`order` must be positive. Received: order={order}")
        self.order = int(order)
        self.digit_class = bool(digit_class)
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(self.order)]
        self.vocab: set[str] = set()
        self.meta: dict = {}
        self._cache: dict[tuple[str, str], float] = {}

    def fit(self, texts: Iterable[str], weight: float = 1.0) -> "CharNgramLM":
        """Count n-grams of `texts`, each occurrence as `weight` (adds to earlier counts). Returns self."""
        if not weight > 0:
            raise ValueError(f"`weight` must be positive. Received: weight={weight}")
        weight = 1 if weight == 1 else float(weight)  # integer counts stay integers in the JSON
        pad = self.BOS * (self.order - 1)
        for text in texts:
            if self.digit_class:
                text = text.translate(self.DIGITS)
            seq = pad + text + self.EOS
            self.vocab.update(text)
            for i in range(self.order - 1, len(seq)):
                for n in range(self.order):  # n = context length
                    self.counts[n][seq[i - n : i]][seq[i]] += weight
        self.vocab.add(self.EOS)
        self._cache.clear()
        return self

    def _prob(self, context: str, char: str) -> float:
        p = 1.0 / (len(self.vocab) + 1)  # +1: characters never seen in training
        for n in range(0, self.order):
            if n > len(context):
                break
            h = context[len(context) - n :] if n else ""
            followers = self.counts[n].get(h)
            if not followers:
                break
            total = sum(followers.values())
            types = len(followers)
            p = (followers.get(char, 0) + types * p) / (total + types)
        return p

    def log_prob(self, context: str, char: str) -> float:
        """Natural log P(char | last order-1 characters of context); the start is padded."""
        context = (self.BOS * (self.order - 1) + context)[-(self.order - 1) :] if self.order > 1 else ""
        if self.digit_class:
            context, char = context.translate(self.DIGITS), char.translate(self.DIGITS)
        key = (context, char)
        value = self._cache.get(key)
        if value is None:
            value = math.log(self._prob(context, char))
            self._cache[key] = value
        return value

    def score(self, text: str, eos: bool = True) -> float:
        """Natural log probability of a whole line (with the end symbol when `eos`)."""
        total = sum(self.log_prob(text[:i], c) for i, c in enumerate(text))
        return total + (self.log_prob(text, self.EOS) if eos else 0.0)

    def to_json(self) -> str:
        data = {"order": self.order, "vocab": "".join(sorted(self.vocab)),
                "counts": [{h: dict(c) for h, c in level.items()} for level in self.counts]}
        if self.digit_class:
            data["digit_class"] = True
        if self.meta:
            data["meta"] = self.meta
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "CharNgramLM":
        data = json.loads(s)
        lm = cls(data["order"], digit_class=bool(data.get("digit_class", False)))
        lm.vocab = set(data["vocab"])
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise ValueError(f"`meta` must be an object. Received: {type(meta).__name__}")
        lm.meta = meta
        for level, stored in zip(lm.counts, data["counts"]):
            for h, followers in stored.items():
                level[h] = Counter(followers)
        return lm


def _logaddexp(a: float, b: float) -> float:
    # math on Python floats: ~10x faster than np.logaddexp on scalars in this hot loop.
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


def _prefix_beam_search(lp: np.ndarray, beam_width: int, prune: float, max_candidates: int, chars: str, lm,
                        lm_weight: float, length_bonus: float) -> tuple[int, ...]:
    """Prefix beam search over one line's log-probs [T, C]; returns the best id tuple."""
    # Each beam: prefix -> [log p ending in blank, log p ending in its last char, fused LM log p].
    beams: dict[tuple, list[float]] = {(): [0.0, NEG_INF, 0.0]}
    log_prune = math.log(prune)
    context_size = lm.order - 1 if lm is not None else 0

    def lm_term(prefix, c):
        context = "".join(chars[i - 1] for i in prefix[len(prefix) - context_size :]) if context_size else ""
        return lm_weight * lm.log_prob(context, chars[c - 1])

    # Expand only the likeliest characters of each frame: a trained model puts almost all of a
    # frame's mass on one or two classes, and this bounds the cost on flat frames.
    chars_lp = lp[:, 1:]
    k = min(max_candidates, chars_lp.shape[1])
    top = np.argpartition(-chars_lp, k - 1, axis=1)[:, :k] if k < chars_lp.shape[1] else np.tile(np.arange(chars_lp.shape[1]), (lp.shape[0], 1))
    for t in range(lp.shape[0]):
        frame = lp[t].tolist()
        candidates = [int(i) + 1 for i in top[t] if chars_lp[t, i] >= log_prune]
        if not candidates:
            candidates = [int(chars_lp[t].argmax()) + 1]
        blank = frame[0]
        nxt: dict[tuple, list[float]] = {}
        for prefix, (pb, pnb, plm) in beams.items():
            total = _logaddexp(pb, pnb)
            entry = nxt.get(prefix)
            if entry is None:
                entry = nxt[prefix] = [NEG_INF, NEG_INF, plm]
            entry[0] = _logaddexp(entry[0], total + blank)
            last = prefix[-1] if prefix else None
            if last is not None:
                entry[1] = _logaddexp(entry[1], pnb + frame[last])  # repeat merged into the same char
            for c in candidates:
                if c == last:
                    if pb == NEG_INF:
                        continue
                    source = pb  # a blank separates a doubled character
                else:
                    source = total
                new = prefix + (c,)
                child = nxt.get(new)
                if child is None:
                    child = nxt[new] = [NEG_INF, NEG_INF, plm + (lm_term(prefix, c) if lm is not None else 0.0)]
                child[1] = _logaddexp(child[1], source + frame[c])
        if len(nxt) > beam_width:
            ranked = sorted(
                nxt.items(),
                key=lambda kv: _logaddexp(kv[1][0], kv[1][1]) + kv[1][2] + length_bonus * len(kv[0]),
                reverse=True,
            )
            beams = dict(ranked[:beam_width])
        else:
            beams = nxt

    def final(kv):
        prefix, (pb, pnb, plm) = kv
        score = _logaddexp(pb, pnb) + plm + length_bonus * len(prefix)
        if lm is not None:
            score += lm_weight * lm.log_prob("".join(chars[i - 1] for i in prefix), lm.EOS)
        return score

    return max(beams.items(), key=final)[0]


def ctc_beam_decode(
    logits,
    charset,
    *,
    beam_width: int = 10,
    logit_lengths=None,
    lm: CharNgramLM | None = None,
    lm_weight: float = 0.5,
    length_bonus: float = 0.0,
    prune: float = 1e-3,
    max_candidates: int | None = None,
    return_confidence: bool = False,
):
    """CTC prefix beam search, optionally fused with a character LM.

    Args:
        logits: float [B, T, C] model output (logits; a log-softmax is applied here).
        charset: `vhrdata.charset.Charset` (or its characters as a str).
        beam_width: prefixes kept after each frame.
        logit_lengths: int [B] valid frames per line; default all T.
        lm: optional `CharNgramLM` fitted on training labels only.
        lm_weight: weight of the LM log-probability (shallow fusion).
        length_bonus: added per character, to offset the LM's bias toward short lines.
        prune: characters below this probability in a frame are not expanded.
        max_candidates: at most this many characters are expanded per frame (the likeliest);
            default `beam_width`.
        return_confidence: also return one confidence per line (see module docstring).

    Returns:
        list of B strings, or (strings, confidences) with `return_confidence=True`.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[0.4, 0.6], [0.4, 0.6]])   # classes: blank, "a"
        >>> ctc_beam_decode(np.log(probs)[None], "a", beam_width=4)  # greedy says "a" too
        ['a']

    Reference:
        Hannun et al., "First-Pass Large Vocabulary Continuous Speech Recognition using
        Bi-Directional Recurrent DNNs", 2014 (prefix beam search).
    """
    charset = _as_charset(charset)
    if int(beam_width) < 1:
        raise ValueError(f"`beam_width` must be positive. Received: beam_width={beam_width}")
    if not 0.0 < prune < 1.0:
        raise ValueError(f"`prune` must be in (0, 1). Received: prune={prune}")
    logits = _check_logits(logits)
    lengths = _lengths(logits, logit_lengths)
    lp = log_softmax(logits)
    id_seqs = [
        list(_prefix_beam_search(lp[i, : lengths[i]], int(beam_width), prune, int(max_candidates or beam_width),
                                 charset.chars, lm, lm_weight, length_bonus))
        for i in range(lp.shape[0])
    ]
    texts = [charset.decode(ids) for ids in id_seqs]
    if not return_confidence:
        return texts
    return texts, ctc_confidences(lp, id_seqs, lengths)


def ctc_char_spans(log_probs: np.ndarray, ids: Sequence[int]) -> list[tuple[int, int, float]]:
    """Where each character of a decoded line sits: (first frame, end frame, confidence) per id.

    The Viterbi (best-path) CTC alignment of `ids` to the frames of one line's log-probabilities
    [T, C] gives each character the frames on which it is emitted; its confidence is its highest
    posterior probability on those frames. Works for any decoder's output, greedy or beam.
    One line of `ctc_char_spans_batch`.

    Example:
        >>> import numpy as np
        >>> lp = np.log(np.eye(3)[[1, 1, 0, 2]] * 0.98 + 0.01)   # blank, "a", "b"
        >>> [(s, e) for s, e, _ in ctc_char_spans(lp, [1, 2])]
        [(0, 2), (3, 4)]
    """
    return ctc_char_spans_batch(np.asarray(log_probs)[None], [ids])[0]


def ctc_char_spans_batch(log_probs: np.ndarray, id_seqs: Sequence[Sequence[int]], logit_lengths=None
                         ) -> list[list[tuple[int, int, float]]]:
    """`ctc_char_spans` of a batch: one Viterbi pass over the frames for all lines at once.

    Args:
        log_probs: float [B, T, C] log-probabilities (blank = 0).
        id_seqs: B sequences of 1-based class ids (each line's decoded text).
        logit_lengths: int [B] valid frames per line; default all T. A line is aligned to its
            own frames only, so its spans are those of `ctc_char_spans(log_probs[b, :length])`.

    Returns:
        Per line, one (first frame, end frame, confidence) per id.
    """
    lp = np.asarray(log_probs, np.float64)
    if lp.ndim != 3:
        raise ValueError(f"`log_probs` must have shape [batch, frames, classes]. Received: shape={lp.shape}")
    b, t_max, _ = lp.shape
    if len(id_seqs) != b:
        raise ValueError(f"need one id sequence per line: {len(id_seqs)} for {b} lines")
    lengths = _lengths(lp, logit_lengths)
    seqs = [[int(i) for i in ids] for ids in id_seqs]
    out: list[list[tuple[int, int, float]]] = [[] for _ in range(b)]
    # Lines with characters and frames are aligned together; a line with characters but no
    # frames gets the even spread below.
    rows = [i for i in range(b) if seqs[i] and lengths[i] > 0]
    for i in range(b):
        if seqs[i] and lengths[i] == 0:
            out[i] = _spread_evenly(0, len(seqs[i]))
    if not rows:
        return out
    n = len(rows)
    own = lengths[rows]
    t_max = int(own.max())
    s_lens = np.array([2 * len(seqs[i]) + 1 for i in rows], np.int64)
    s_len = int(s_lens.max())
    ext = np.zeros((n, s_len), np.int64)  # blank, c1, blank, c2, ..., blank; then blanks (unused states)
    for r, i in enumerate(rows):
        ext[r, 1 : s_lens[r] : 2] = seqs[i]
    neg = -np.inf
    # The skip s-2 -> s is allowed into a character that differs from the one two states back.
    skip = np.zeros((n, s_len), bool)
    skip[:, 2:] = (ext[:, 2:] != 0) & (ext[:, 2:] != ext[:, :-2])
    sub = lp[rows, :t_max]
    emit = np.take_along_axis(sub, np.broadcast_to(ext[:, None, :], (n, t_max, s_len)), axis=2)  # [N, T, S]
    back = np.zeros((n, t_max, s_len), np.int8)  # how far back the predecessor state is (0, 1 or 2)
    score = np.full((n, s_len), neg)
    score[:, 0] = emit[:, 0, 0]
    score[:, 1] = emit[:, 0, 1]
    last = np.full((n, s_len), neg)  # each line's scores on its own last frame
    ending = {int(k): np.nonzero(own == k)[0] for k in np.unique(own)}  # frame count -> its lines
    if 1 in ending:
        last[ending[1]] = score[ending[1]]
    skip_penalty = np.where(skip, 0.0, neg)[:, 2:]
    prev1 = np.full((n, s_len), neg)
    prev2 = np.full((n, s_len), neg)
    for t in range(1, t_max):
        # One frame for all lines and states at once; ties keep the nearer predecessor (stay,
        # then 1, then 2 back). A state no path reaches stays -inf with step 0. States past a
        # line's own ones only ever feed later such states.
        prev1[:, 1:] = score[:, :-1]
        np.add(score[:, :-2], skip_penalty, out=prev2[:, 2:])
        best = np.maximum(score, prev1)
        take1 = prev1 > score
        take2 = prev2 > best
        np.maximum(best, prev2, out=best)
        back[:, t] = np.where(take2, 2, take1)
        score = best + emit[:, t]
        if t + 1 in ending:
            last[ending[t + 1]] = score[ending[t + 1]]
    r_idx = np.arange(n)
    final = last[r_idx, s_lens - 1]
    before = last[r_idx, s_lens - 2]
    end = np.where(final >= before, s_lens - 1, s_lens - 2)
    ok = np.isfinite(last[r_idx, end])
    states = np.zeros((n, t_max), np.int64)
    s = end.copy()
    for t in range(t_max - 1, -1, -1):
        active = t < own
        states[active, t] = s[active]
        s = np.where(active, s - back[r_idx, t, s], s)
    for r, i in enumerate(rows):
        ids = seqs[i]
        length = int(own[r])
        if not ok[r]:
            # Too few frames for the text (cannot happen for a decoder's own output): spread evenly.
            out[i] = _spread_evenly(length, len(ids))
            continue
        path = states[r, :length]  # non-decreasing: each character's frames are one run
        odd = 2 * np.arange(len(ids)) + 1
        starts = np.searchsorted(path, odd, "left")
        stops = np.searchsorted(path, odd, "right")
        on_char = (path % 2) == 1
        values = sub[r, np.arange(length)[on_char], ext[r, path[on_char]]]
        offsets = np.concatenate([[0], np.cumsum(stops - starts)[:-1]])
        conf = np.exp(np.maximum.reduceat(values, offsets))
        out[i] = [(int(a), int(z), float(c)) for a, z, c in zip(starts, stops, conf)]
    return out


def _spread_evenly(frames: int, n: int) -> list[tuple[int, int, float]]:
    per = frames / n
    return [(int(k * per), max(int(k * per) + 1, int((k + 1) * per)), 0.0) for k in range(n)]
