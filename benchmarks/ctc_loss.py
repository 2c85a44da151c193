"""Training-loss CTC on TensorFlow: Keras' dense recursion against TF's compiled kernel.

`keras.ops.ctc_loss` hands TensorFlow dense labels, which on a CPU runs a scan built of small ops;
`vhrmodel.losses.ctc_loss` hands it sparse labels, which runs TF's C++ kernel. This times both, in
the same process and interleaved, three ways:

- `loss_and_gradient`: the loss and its gradient in a `tf.function` (what `fit` runs per step);
- `eager_loss`: the loss alone, eagerly (what validation runs per batch);
- `train_step`: a whole step of the `small` model (forward, loss, gradient), in a `tf.function`.

Shapes are a training batch's: 16 lines 800 px wide at height 32 (200 frames), 180 classes,
70-character labels. Each `*_dense_over_kernel` is the ratio of the medians of `--repeats` runs;
`max_abs_diff` is the largest disagreement of the two losses. Prints one JSON object.

    .venv/bin/python benchmarks/ctc_loss.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def median_ratio(slow, fast, args, repeats: int) -> float:
    """Median time of `slow(*args)` over the median of `fast(*args)`, interleaved, after a warm-up."""
    slow(*args), fast(*args)
    slow_t, fast_t = [], []
    for _ in range(repeats):
        for f, times in ((slow, slow_t), (fast, fast_t)):
            t0 = time.perf_counter()
            f(*args)
            times.append(time.perf_counter() - t0)
    return round(statistics.median(slow_t) / statistics.median(fast_t), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    from keras import ops

    from vhrmodel.losses import ctc_loss
    from vhrmodel.presets import build_model

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("this benchmark compares TensorFlow's two CTC paths; run it with KERAS_BACKEND=tensorflow")
    batch, width, height, classes, chars = 16, 800, 32, 180, 70
    rng = np.random.default_rng(0)
    alphabet = "".join(chr(0x100 + i) for i in range(classes - 1))
    model = build_model("small", height=height, alphabet=alphabet)
    frames = width // int(model.downsample)
    labels = rng.integers(1, classes, (batch, chars)).astype("int32")
    label_lengths = np.full(batch, chars, "int32")
    frame_counts = np.full(batch, frames, "int32")
    logits = tf.constant(rng.normal(0.0, 2.0, (batch, frames, classes)).astype("float32"))
    x = {"images": rng.integers(0, 256, (batch, height, width, 1)).astype("uint8"),
         "widths": np.full(batch, width, "int32")}

    def dense(lo):
        return ops.ctc_loss(labels, lo, label_lengths, frame_counts, mask_index=0)

    def kernel(lo):
        return ctc_loss(labels, lo, label_lengths, frame_counts)

    def with_gradient(loss_fn):
        @tf.function
        def run(lo):
            with tf.GradientTape() as tape:
                tape.watch(lo)
                total = tf.reduce_mean(loss_fn(lo))
            return tape.gradient(total, lo)
        return run

    def train_step(loss_fn):
        @tf.function
        def run(inputs):
            with tf.GradientTape() as tape:
                total = tf.reduce_mean(loss_fn(model(inputs, training=True)))
            return tape.gradient(total, model.trainable_variables)
        return run

    results = {
        "loss_and_gradient_dense_over_kernel": median_ratio(with_gradient(dense), with_gradient(kernel), (logits,),
                                                            args.repeats),
        "eager_loss_dense_over_kernel": median_ratio(dense, kernel, (logits,), args.repeats),
        "train_step_dense_over_kernel": median_ratio(train_step(dense), train_step(kernel), (x,), args.repeats),
        "max_abs_diff": float(np.abs(np.asarray(dense(logits)) - np.asarray(kernel(logits))).max()),
    }
    print(json.dumps({"batch": batch, "width": width, "frames": frames, "classes": classes, "label_chars": chars,
                      "repeats": args.repeats, **results}))


if __name__ == "__main__":
    main()
