"""CTC likelihood speed: the linear-space forward pass of `ctc_log_likelihood` against the exact
log-space one it falls back to, on one core.

Prints one JSON object. The logits are synthetic but shaped like a real line's (256 frames of a
1024 px line at height 32, 200 classes, peaked on a 60-character label as a trained model's are);
batches of 1, 8 and 64 candidate lines of one line's frames, as the lexicon's rescoring scores them
(one field changed per candidate). Both paths run in the same process, interleaved, and
`log_over_linear` is their ratio (median of `--repeats`); `max_abs_diff` is their largest
disagreement in nats.

    .venv/bin/python benchmarks/ctc.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from vhrmodel.decoding import _ctc_alpha_log, _ctc_emissions, _ctc_end, ctc_log_likelihood, log_softmax  # noqa: E402


def line_logits(frames: int, classes: int, label: list[int], seed: int) -> np.ndarray:
    """One line's log-probabilities [1, T, C]: the label's characters spread over the frames, blanks between."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (frames, classes)).astype(np.float32)
    logits[:, 0] += 4.0
    step = frames / (len(label) + 1)
    for i, ch in enumerate(label):
        logits[int((i + 0.5) * step), ch] += 12.0
    return log_softmax(logits[None])


def candidates(label: list[int], count: int, classes: int, seed: int) -> list[list[int]]:
    """`count` labels: the label, then copies with its last 8 characters replaced (another last field)."""
    rng = np.random.default_rng(seed)
    out = [list(label)]
    while len(out) < count:
        out.append(list(label[:-8]) + [int(c) for c in rng.integers(1, classes, int(rng.integers(5, 12)))])
    return out


def log_space(lp: np.ndarray, labels: list[list[int]]) -> np.ndarray:
    """The same likelihoods by the log-space recursion alone (what the fast path falls back to)."""
    emit, skip, lens = _ctc_emissions(lp, labels)
    return _ctc_end(_ctc_alpha_log(emit, skip, np.full(lp.shape[0], lp.shape[1])), lens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frames, classes = 256, 200
    label = [int(c) for c in np.random.default_rng(0).integers(1, classes, 60)]
    one = line_logits(frames, classes, label, seed=1)
    results = {}
    for batch in (1, 8, 64):
        labels = candidates(label, batch, classes, seed=batch)
        lp = np.broadcast_to(one, (batch, frames, classes))
        ctc_log_likelihood(lp, labels), log_space(lp, labels)  # untimed: first calls pay one-off costs
        fast_t, slow_t = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fast = ctc_log_likelihood(lp, labels)
            fast_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            slow = log_space(lp, labels)
            slow_t.append(time.perf_counter() - t0)
        finite = np.isfinite(slow)
        results[f"batch_{batch}"] = {
            "log_over_linear": round(statistics.median(slow_t) / statistics.median(fast_t), 2),
            "max_abs_diff": float(np.abs(fast[finite] - slow[finite]).max()) if finite.any() else 0.0,
            "same_unalignable": bool((np.isfinite(fast) == finite).all()),
        }
    print(json.dumps({"frames": frames, "classes": classes, "label_chars": len(label), "results": results}))


if __name__ == "__main__":
    main()
