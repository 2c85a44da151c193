"""A line reads the same alone, in a batch with wider lines, and padded to a multiple of 64.

The model masks each line's padding (ColumnMask after every block, a BiLSTM that reads each
line within its own frames, blank frames past its end), so the logits on a line's own frames
must not depend on the batch. Random weights, with batch-norm statistics and biases made
non-trivial, so that an unmasked padding column would visibly leak into the last frames.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from vhrdata.preprocess import PAD_VALUE

PRESETS_AND_HEIGHTS = [("tiny", 32), ("small", 48)]


def randomised(preset, height, seed=0):
    import keras

    from vhrmodel.presets import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(preset, num_classes=30, height=height)
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.5, beta.shape).astype("float32"),
                               rng.normal(0, 0.5, mean.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, var.shape).astype("float32")])
    return model


def logits(model, images, widths):
    from vhrmodel.runtime import KerasRuntime

    return KerasRuntime(model, width_multiple=1).logits(np.asarray(images, np.uint8), np.asarray(widths, np.int32))


def check_invariance(model, height, width=103, seed=1):
    from vhrmodel.decoding import ctc_greedy_decode

    rng = np.random.default_rng(seed)
    line = rng.integers(0, 256, (height, width)).astype(np.uint8)
    frames = width // model.downsample
    alone = logits(model, line[None], [width])[0, :frames]

    wide = 3 * width + 5
    batch = np.full((3, height, wide), PAD_VALUE, np.uint8)
    batch[0, :, :width] = line
    batch[1] = rng.integers(0, 256, (height, wide))
    batch[2, :, : 2 * width] = rng.integers(0, 256, (height, 2 * width))
    in_batch = logits(model, batch, [width, wide, 2 * width])[0, :frames]

    padded_width = -(-width // 64) * 64
    padded = np.full((1, height, padded_width), PAD_VALUE, np.uint8)
    padded[0, :, :width] = line
    in_padding = logits(model, padded, [width])[0, :frames]

    np.testing.assert_allclose(in_batch, alone, atol=1e-4)
    np.testing.assert_allclose(in_padding, alone, atol=1e-4)
    chars = "abcdefghijklmnopqrstuvwxyzđơư"
    texts = [ctc_greedy_decode(x[None], chars)[0] for x in (alone, in_batch, in_padding)]
    assert texts[0] == texts[1] == texts[2]
    return float(np.abs(alone).max())


@pytest.mark.parametrize("preset,height", PRESETS_AND_HEIGHTS)
def test_a_line_reads_the_same_alone_in_a_wider_batch_and_padded(preset, height):
    scale = check_invariance(randomised(preset, height), height)
    assert scale > 1e-3  # the logits are not trivially zero


def test_padding_frames_are_blank_and_the_full_length_loss_equals_the_own_frames_loss():
    from vhrmodel.losses import CTCLoss, ctc_loss

    model = randomised("tiny", 32)
    rng = np.random.default_rng(3)
    images = np.full((2, 32, 200), PAD_VALUE, np.uint8)
    images[0, :, :120] = rng.integers(0, 256, (32, 120))
    images[1] = rng.integers(0, 256, (32, 200))
    out = logits(model, images, [120, 200])
    assert (out[0, 30:].argmax(-1) == 0).all()
    labels = np.array([[1, 2, 3, 0], [4, 5, 6, 7]], np.int32)
    full = np.asarray(CTCLoss(reduction=None)(labels, out))
    own = np.asarray(ctc_loss(labels, out, np.array([3, 4]), np.array([30, 50])))
    np.testing.assert_allclose(full, own, rtol=1e-4, atol=1e-4)


@pytest.mark.jax
@pytest.mark.slow
def test_batch_invariance_holds_under_jax():
    pytest.importorskip("jax")
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from test_batch_invariance import randomised, check_invariance;"
        "import keras; assert keras.backend.backend() == 'jax';"
        "[check_invariance(randomised(p, h), h) for p, h in [('tiny', 32), ('small', 48)]]; print('ok')"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_a_model_file_of_the_old_format_is_refused_with_a_retrain_message(tmp_path):
    import json
    import zipfile

    from vhrmodel.artifact import load_model, save_model
    from vhrmodel.errors import ModelFileError
    from vhrmodel.presets import build_model

    path = save_model(build_model("tiny", alphabet="ab", preprocessing={"height": 32}), tmp_path / "m.keras")
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["format_version"]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="format 1.*retrain"):
        load_model(old)
