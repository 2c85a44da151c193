import itertools
import math

import numpy as np
import pytest

from vhrdata.charset import Charset
from vhrmodel.decoding import (
    CharNgramLM,
    ctc_beam_decode,
    ctc_greedy_decode,
    ctc_log_likelihood,
    log_softmax,
)

CS = Charset("ab")  # ids: blank 0, a 1, b 2


def one_hot_logits(path, num_classes=3, peak=12.0):
    """Logits whose argmax follows `path` (class ids per frame)."""
    logits = np.zeros((len(path), num_classes), dtype=np.float32)
    logits[np.arange(len(path)), path] = peak
    return logits


def brute_force_probability(probs, labels):
    """P(labels | x) by enumerating every alignment of a tiny example."""
    t, c = probs.shape
    total = 0.0
    for path in itertools.product(range(c), repeat=t):
        collapsed = [k for k, _ in itertools.groupby(path) if k != 0]
        if collapsed == list(labels):
            total += math.prod(probs[i, k] for i, k in enumerate(path))
    return total


@pytest.mark.parametrize(
    "path, expected",
    [
        ([1, 1, 0, 1, 2, 2], "aab"),  # a blank separates a doubled letter
        ([1, 1, 1, 2, 2, 1], "aba"),  # repeats merge
        ([0, 0, 0], ""),
        ([0, 2, 0, 2, 0, 0], "bb"),
        ([2], "b"),
    ],
)
def test_greedy_collapses_repeats_and_drops_blanks(path, expected):
    assert ctc_greedy_decode(one_hot_logits(path)[None], CS) == [expected]


def test_greedy_batch_respects_logit_lengths():
    batch = np.stack([one_hot_logits([1, 0, 2, 2]), one_hot_logits([2, 2, 1, 1])])
    assert ctc_greedy_decode(batch, CS) == ["ab", "ba"]
    assert ctc_greedy_decode(batch, CS, logit_lengths=[2, 3]) == ["a", "ba"]
    assert ctc_greedy_decode(batch, "ab") == ["ab", "ba"]


def test_ctc_log_likelihood_matches_brute_force_enumeration():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 3)).astype(np.float32)
    lp = log_softmax(logits)
    probs = np.exp(lp.astype(np.float64))
    for labels in ([1], [1, 1], [1, 2], [2, 1, 2], []):
        got = ctc_log_likelihood(lp, [labels, labels])
        want = brute_force_probability(probs[0], labels)
        assert math.exp(got[0]) == pytest.approx(want, rel=1e-4)


def test_ctc_log_likelihood_is_exact_where_linear_space_would_underflow():
    # Frames whose every state is below e**-745 (float64's smallest) underflow in linear space; the
    # likelihood is still the exact log-space one, for that line only, beside ordinary lines.
    from vhrmodel.decoding import _ctc_alpha_log, _ctc_emissions, _ctc_end

    rng = np.random.default_rng(1)
    lp = np.log(np.full((3, 40, 3), 1 / 3))
    lp[1, 10:30] = [-900.0, -900.0, 0.0]  # 20 frames that all but rule out blank and "a", all line 1 has
    lp[2] = log_softmax(rng.normal(size=(40, 3)) * 3)
    labels = [[1, 2, 1], [1, 1], [2, 1, 2, 2]]
    got = ctc_log_likelihood(lp, labels, logit_lengths=[40, 40, 33])
    emit, skip, lens = _ctc_emissions(lp, labels)
    want = _ctc_end(_ctc_alpha_log(emit, skip, np.array([40, 40, 33])), lens)
    assert np.isfinite(got[1]) and got[1] < -17000  # far below what linear space holds, yet finite
    assert got == pytest.approx(want, rel=1e-9)


def test_ctc_log_likelihood_is_minus_inf_when_label_does_not_fit():
    lp = log_softmax(np.zeros((1, 2, 3), np.float32))
    assert ctc_log_likelihood(lp, [[1, 1]])[0] == -np.inf  # needs a blank between: 3 frames
    assert np.isfinite(ctc_log_likelihood(lp, [[1, 2]])[0])


def test_beam_finds_the_sequence_that_greedy_misses():
    # Each frame: blank 0.6, "a" 0.4. Best path is blank-blank (0.36), but "a" has
    # P = 0.4*0.4 + 0.4*0.6 + 0.6*0.4 = 0.64 summed over its three alignments.
    probs = np.array([[[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]]]) + 1e-9
    logits = np.log(probs)
    assert ctc_greedy_decode(logits, CS) == [""]
    texts, conf = ctc_beam_decode(logits, CS, beam_width=4, return_confidence=True)
    assert texts == ["a"]
    assert conf[0] == pytest.approx(0.64, rel=1e-6)


def test_beam_agrees_with_greedy_on_peaked_logits_and_confidences_match():
    batch = np.stack([one_hot_logits([1, 1, 0, 1, 2, 2]), one_hot_logits([0, 2, 0, 2, 1, 0])])
    greedy, g_conf = ctc_greedy_decode(batch, CS, return_confidence=True)
    beam, b_conf = ctc_beam_decode(batch, CS, beam_width=5, return_confidence=True)
    assert greedy == beam == ["aab", "bba"]
    assert g_conf == pytest.approx(b_conf)
    assert all(0.99 < c <= 1.0 for c in g_conf)


def test_confidence_is_lower_for_ambiguous_frames():
    sharp = one_hot_logits([1, 0, 2])
    vague = sharp.copy()
    vague[2] = [0.0, 0.0, 0.5]
    _, conf = ctc_greedy_decode(np.stack([sharp, vague]), CS, return_confidence=True)
    assert conf[1] < conf[0]


def test_beam_matches_exhaustive_search_on_random_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(6, 5, 3)).astype(np.float32)
    lp = log_softmax(logits)
    candidates = [list(s) for n in range(0, 6) for s in itertools.product([1, 2], repeat=n)]
    beam = ctc_beam_decode(logits, CS, beam_width=64, prune=1e-9)
    for i in range(logits.shape[0]):
        scores = ctc_log_likelihood(np.repeat(lp[i : i + 1], len(candidates), axis=0), candidates)
        best = candidates[int(np.argmax(scores))]
        assert beam[i] == CS.decode(best)


def test_char_lm_prefers_training_text_and_round_trips():
    lm = CharNgramLM(order=3).fit(["ab ab", "ab ba"])
    assert lm.log_prob("a", "b") > lm.log_prob("a", "a")
    assert lm.score("ab ab") > lm.score("bb bb")
    assert lm.log_prob("", "z") < 0  # unseen characters keep some probability
    restored = CharNgramLM.from_json(lm.to_json())
    assert restored.score("ab ba") == pytest.approx(lm.score("ab ba"))


def test_char_lm_probabilities_sum_to_one():
    lm = CharNgramLM(order=3).fit(["hà nội", "hà nam", "huế"])
    support = sorted(lm.vocab) + ["?"]  # "?" stands for every unseen character
    for context in ["", "h", "hà", "xyz"]:
        total = sum(math.exp(lm.log_prob(context, c)) for c in support)
        assert total == pytest.approx(1.0)


def test_lm_fusion_breaks_an_acoustic_tie():
    # Middle frame is torn between "a" and "b"; the LM has only seen "aab".
    cs = Charset("ab")
    frames = np.array([[0.02, 0.96, 0.02], [0.9, 0.05, 0.05], [0.02, 0.48, 0.50], [0.9, 0.05, 0.05], [0.02, 0.02, 0.96]])
    logits = np.log(frames)[None]
    lm = CharNgramLM(order=3).fit(["aab"] * 5)
    without = ctc_beam_decode(logits, cs, beam_width=8)
    with_lm = ctc_beam_decode(logits, cs, beam_width=8, lm=lm, lm_weight=1.0)
    assert without == ["abb"]
    assert with_lm == ["aab"]


def test_digit_class_lm_knows_where_a_number_goes_but_not_which_digits():
    texts = ["Số 12 Lê Lợi", "Số 12 Lê Lợi", "Số 7 Hàng Bạc"]
    by_name = CharNgramLM(order=4).fit(texts)
    as_class = CharNgramLM(order=4, digit_class=True).fit(texts)
    # by name, "Số 1" is far likelier than "Số 9"; as a class every digit is the same
    assert by_name.log_prob("Số ", "1") > by_name.log_prob("Số ", "9") + 1.0
    assert as_class.log_prob("Số ", "1") == as_class.log_prob("Số ", "9") == as_class.log_prob("Số ", "0")
    assert as_class.log_prob("Số ", "1") > as_class.log_prob("Số ", "L")  # a number still goes there
    assert as_class.log_prob("Số 98", " ") == as_class.log_prob("Số 12", " ")  # contexts too
    restored = CharNgramLM.from_json(as_class.to_json())
    assert restored.digit_class and restored.score("Số 45 Lê Lợi") == pytest.approx(as_class.score("Số 12 Lê Lợi"))
    assert not CharNgramLM.from_json(by_name.to_json()).digit_class  # files without the key read as before
    # in the decoder: a frame torn between "1" and "9" is left to the model, not pulled to "1"
    cs = Charset("19")
    frames = np.array([[0.02, 0.40, 0.58]])
    lm_by_name = CharNgramLM(order=2).fit(["1"] * 20 + ["9"])
    lm_class = CharNgramLM(order=2, digit_class=True).fit(["1"] * 20 + ["9"])
    assert ctc_beam_decode(np.log(frames)[None], cs, beam_width=4, lm=lm_by_name, lm_weight=1.0) == ["1"]
    assert ctc_beam_decode(np.log(frames)[None], cs, beam_width=4, lm=lm_class, lm_weight=1.0) == ["9"]


def test_decoders_reject_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        ctc_greedy_decode(np.zeros((3, 4)), CS)
    with pytest.raises(ValueError, match="beam_width"):
        ctc_beam_decode(np.zeros((1, 3, 3)), CS, beam_width=0)


def test_beam_candidate_limit_keeps_results_on_peaked_frames():
    rng = np.random.default_rng(3)
    cs = Charset("abcdefgh")
    path = rng.choice([0, 0, 1, 2, 3, 4, 5, 6, 7, 8], size=40)
    logits = rng.normal(size=(1, 40, 9)).astype(np.float32)
    logits[0, np.arange(40), path] += 8.0
    greedy = ctc_greedy_decode(logits, cs)
    assert ctc_beam_decode(logits, cs, beam_width=8, max_candidates=2) == greedy
    assert ctc_beam_decode(logits, cs, beam_width=8, max_candidates=1) == greedy


def _char_spans_reference(lp, ids):
    """The frame-by-frame, state-by-state Viterbi alignment that `ctc_char_spans` vectorises."""
    lp = np.asarray(lp, np.float64)
    ext = [0]
    for i in ids:
        ext += [i, 0]
    t_max, s_len, neg = lp.shape[0], len(ext), -np.inf
    score = np.full((t_max, s_len), neg)
    back = np.zeros((t_max, s_len), np.int8)
    score[0, 0] = lp[0, ext[0]]
    score[0, 1] = lp[0, ext[1]]
    for t in range(1, t_max):
        prev = score[t - 1]
        for s in range(s_len):
            best, step = prev[s], 0
            if s >= 1 and prev[s - 1] > best:
                best, step = prev[s - 1], 1
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2] and prev[s - 2] > best:
                best, step = prev[s - 2], 2
            if best > neg:
                score[t, s] = best + lp[t, ext[s]]
                back[t, s] = step
    end = s_len - 1 if score[-1, s_len - 1] >= score[-1, s_len - 2] else s_len - 2
    if not np.isfinite(score[-1, end]):
        return None
    states, s = np.zeros(t_max, np.int64), end
    for t in range(t_max - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    out = []
    for k, char_id in enumerate(ids):
        frames = np.nonzero(states == 2 * k + 1)[0]
        start, stop = int(frames[0]), int(frames[-1]) + 1
        out.append((start, stop, float(np.exp(lp[start:stop, char_id].max()))))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_char_spans_match_the_state_by_state_alignment(seed):
    from vhrmodel.decoding import ctc_char_spans, log_softmax

    rng = np.random.default_rng(seed)
    t, c = int(rng.integers(3, 60)), int(rng.integers(2, 7))
    logits = rng.normal(0, 3, (t, c))
    if seed % 3 == 0:  # coarse values: many ties between predecessors
        logits = np.round(logits)
    lp = log_softmax(logits)
    if seed % 2:  # a decoder's own output
        best = logits.argmax(-1)
        ids = [int(k) for j, k in enumerate(best) if k != 0 and (j == 0 or best[j - 1] != k)] or [1]
    else:
        ids = [int(i) for i in rng.integers(1, c, int(rng.integers(1, max(2, t // 2))))]
    expected = _char_spans_reference(lp, ids)
    if expected is not None:
        assert ctc_char_spans(lp, ids) == expected


@pytest.mark.parametrize("coarse", [False, True])
def test_char_spans_of_a_batch_are_each_lines_own_alignment(coarse):
    from vhrmodel.decoding import ctc_char_spans, ctc_char_spans_batch, log_softmax

    rng = np.random.default_rng(7 + coarse)
    b, t, c = 9, 40, 6
    logits = rng.normal(0, 3, (b, t, c))
    if coarse:  # many ties between predecessors
        logits = np.round(logits)
    lengths = np.array([40, 1, 17, 25, 3, 40, 8, 31, 12])
    for i, n in enumerate(lengths):  # frames past a line's own must not reach its alignment
        logits[i, n:] = rng.normal(0, 30, (t - n, c))
    lp = log_softmax(logits)
    seqs = [[int(k) for k in rng.integers(1, c, int(rng.integers(1, max(2, n // 2))))] for n in lengths]
    seqs[4] = []  # no text
    seqs[6] = [1, 1, 1, 1, 1]  # needs 9 frames, has 8: spread evenly
    got = ctc_char_spans_batch(lp, seqs, lengths)
    assert got[4] == [] and [s[2] for s in got[6]] == [0.0] * 5
    checked = 0
    for i, (ids, n) in enumerate(zip(seqs, lengths)):
        assert got[i] == ctc_char_spans(lp[i, :n], ids)
        expected = _char_spans_reference(lp[i, :n], ids) if ids else None
        if expected is not None:
            assert got[i] == expected
            checked += 1
    assert checked >= 5
