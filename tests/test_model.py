import numpy as np
import pytest

import keras

from vhrmodel.losses import CTCLoss, ctc_loss
from vhrmodel.model import CRNN, CropWidth, ResidualBlock
from vhrmodel.presets import PRESETS, build_model, preset_config


def white_images(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    images = np.full((batch, height, width, 1), 255, dtype=np.uint8)
    images[:, height // 4 : 3 * height // 4, : width - 3] = rng.integers(0, 256, (batch, height // 2, width - 3, 1))
    return images


def inputs(images, widths=None):
    """The model's x: images and each line's width (default: the full batch width)."""
    if widths is None:
        widths = [images.shape[2]] * images.shape[0]
    return {"images": images, "widths": np.asarray(widths, "int32")}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build_and_round_trip_get_config(preset):
    model = build_model(preset, num_classes=12, height=48)
    config = model.get_config()
    clone = CRNN.from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == model.count_params()
    assert model.downsample == 4
    assert model.output_shape == (None, None, 12)


def test_preset_sizes_are_ordered_and_small_fits_the_cpu_budget():
    sizes = {p: build_model(p, num_classes=140, height=64).count_params() for p in PRESETS}
    assert sizes["tiny"] < sizes["small"] < sizes["base"]
    assert sizes["small"] <= 3_000_000


@pytest.mark.parametrize("width", [4, 5, 6, 7, 8, 63, 64, 65, 66, 130, 333])
def test_output_has_width_over_four_frames_for_any_width(width):
    model = build_model("tiny", num_classes=7, height=32)
    out = model.predict(inputs(white_images(2, 32, max(width, 4))[:, :, :width]), verbose=0)
    assert out.shape == (2, width // 4, 7)
    assert model.num_frames(width) == width // 4


def test_reshape_and_pool_height_reductions_give_same_frame_count():
    for reduction in ("reshape", "max", "mean"):
        model = build_model("tiny", num_classes=5, height=40, height_reduction=reduction)
        assert model.predict(inputs(white_images(1, 40, 50)), verbose=0).shape == (1, 12, 5)


def test_build_model_takes_classes_and_height_from_charset_and_preprocessing():
    model = build_model("tiny", alphabet="abc", preprocessing={"height": 32, "binarize": "none"})
    assert model.num_classes == 4
    assert model.height == 32
    assert model.charset.chars == "abc"
    assert model.preprocessing == {"height": 32, "binarize": "none"}
    assert build_model("tiny", num_classes=9, height=32, lstm_units=8).lstm_units == 8


def test_build_model_errors_name_the_problem():
    with pytest.raises(ValueError, match="Unknown preset"):
        build_model("huge", num_classes=5, height=32)
    with pytest.raises(ValueError, match="height"):
        build_model("tiny", num_classes=5)
    with pytest.raises(ValueError, match="len\\(alphabet\\) \\+ 1"):
        build_model("tiny", num_classes=9, height=32, alphabet="abc")
    with pytest.raises(ValueError, match="same length"):
        build_model("tiny", num_classes=5, height=32, stage_blocks=[1])
    with pytest.raises(ValueError, match="Received: filters=0"):
        ResidualBlock(0)


def test_presets_are_copied_not_shared():
    config = preset_config("small")
    config["stage_filters"].append(999)
    assert 999 not in PRESETS["small"]["stage_filters"]


def test_residual_block_and_crop_width_configs_round_trip():
    block = ResidualBlock(8, kernel_size=(3, 5), strides=(2, 1), dropout=0.1, name="b")
    assert ResidualBlock.from_config(block.get_config()).get_config() == block.get_config()
    assert block(np.zeros((1, 6, 10, 4), "float32")).shape == (1, 3, 10, 8)
    crop = CropWidth(4)
    assert CropWidth.from_config(crop.get_config()).multiple == 4
    assert crop(np.zeros((1, 2, 11, 1), "uint8")).shape == (1, 2, 8, 1)


def test_ctc_loss_ignores_label_padding():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 10, 4)).astype("float32")
    padded = np.array([[1, 2, 0, 0], [3, 3, 1, 0]], "int32")
    explicit = ctc_loss(padded, logits, np.array([2, 3]), np.array([10, 10]))
    per_sample = CTCLoss(reduction=None)(padded, logits)
    np.testing.assert_allclose(np.asarray(per_sample), np.asarray(explicit), rtol=1e-5)
    short = ctc_loss(padded[:1, :2], logits[:1], np.array([2]), np.array([10]))
    np.testing.assert_allclose(np.asarray(explicit)[:1], np.asarray(short), rtol=1e-5)


def test_tensorflow_ctc_kernel_matches_the_dense_recursion():
    """On TensorFlow, `ctc_loss` runs TF's compiled kernel (sparse labels) instead of Keras' dense
    scan: same values and gradients, with labels padded by anything past their lengths, lines of
    their own frame counts, repeats, a one-character label and an empty one (the kernel refuses
    those; their loss is that of all blanks)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the kernel path is TensorFlow's; other backends run keras.ops.ctc_loss")
    import tensorflow as tf
    from keras import ops

    rng = np.random.default_rng(1)
    logits = tf.constant(rng.normal(size=(6, 40, 12)).astype("float32") * 3)
    labels = rng.integers(1, 12, (6, 9)).astype("int32")
    labels[0, 3] = labels[0, 2]  # a repeat needs a blank between
    label_lengths = np.array([9, 5, 1, 0, 9, 3], "int32")  # one empty (all its characters unknown)
    frames = np.array([40, 30, 12, 40, 25, 8], "int32")
    labels[1, 5:] = 11  # not zero past its length
    zero_padded = np.where(np.arange(9)[None] < label_lengths[:, None], labels, 0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        kernel = ctc_loss(labels, logits, label_lengths, frames)
        dense = ops.ctc_loss(zero_padded, logits, label_lengths, frames, mask_index=0)
        kernel_sum, dense_sum = tf.reduce_sum(kernel), tf.reduce_sum(dense)
    np.testing.assert_allclose(np.asarray(kernel), np.asarray(dense), rtol=1e-5)
    assert np.all(np.asarray(kernel) > 1.0)
    np.testing.assert_allclose(tape.gradient(kernel_sum, logits).numpy(), tape.gradient(dense_sum, logits).numpy(),
                               atol=1e-4)
    # A batch whose labels are all empty, down to no label columns at all:
    no_columns = ctc_loss(np.zeros((6, 0), "int32"), logits, np.zeros(6, "int32"), frames)
    np.testing.assert_allclose(np.asarray(no_columns),
                               np.asarray(ops.ctc_loss(np.zeros((6, 1), "int32"), logits, np.zeros(6, "int32"), frames,
                                                       mask_index=0)), rtol=1e-5)


def test_tensorflow_ctc_kernel_on_lines_too_short_for_their_label():
    """The cases the store build quarantines (ctc_infeasible) give an infinite loss (repeats that
    do not fit) or a zero loss with no gradient (a label longer than its frames), never NaN."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the kernel path is TensorFlow's")
    import tensorflow as tf

    logits = tf.constant(np.random.default_rng(2).normal(size=(2, 4, 6)).astype("float32"))
    labels = np.array([[1, 1, 1, 0, 0], [1, 2, 3, 4, 5]], "int32")
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = ctc_loss(labels, logits, np.array([3, 5]), np.array([4, 4]))
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, logits).numpy()
    assert np.isinf(np.asarray(loss)[0]) and np.asarray(loss)[1] == 0.0
    assert np.isfinite(grad).all() and not grad[1].any()


def test_tiny_model_training_decreases_loss():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = build_model("tiny", num_classes=6, height=32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=CTCLoss())
    images = white_images(8, 32, 96)
    labels = rng.integers(1, 6, size=(8, 6)).astype("int32")
    labels[::2, 4:] = 0  # variable-length labels, 0-padded
    history = model.fit(inputs(images), labels, batch_size=8, epochs=15, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]


def test_saved_model_reloads_and_predicts_identically(tmp_path):
    keras.utils.set_random_seed(1)
    model = build_model("tiny", alphabet="abcdè", preprocessing={"height": 32, "max_width": 2048})
    model.compile(optimizer="adam", loss=CTCLoss())
    images = white_images(3, 32, 70, seed=2)
    model.fit(inputs(images, [70, 50, 33]), np.array([[1, 2, 0], [3, 0, 0], [5, 4, 1]], "int32"), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, CRNN)
    assert restored.charset.chars == "abcdè"
    assert restored.preprocessing == {"height": 32, "max_width": 2048}
    x = inputs(images, [70, 50, 33])
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


def test_strided_block_on_few_channels_trains():
    # A strided 1x1 shortcut on < 16 channels corrupted memory in TF 2.21's oneDNN backward pass
    # at this size; the ResNet-D shortcut (average pool, then 1x1 conv) must not.
    inputs = keras.Input((32, None, 8))
    model = keras.Model(inputs, ResidualBlock(16, strides=2)(inputs))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 600, 8), dtype=np.float32)
    y = rng.random((16, 16, 300, 16), dtype=np.float32)
    losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_every_preset_has_a_recommended_height():
    from vhrmodel.presets import RECOMMENDED_HEIGHT

    assert set(RECOMMENDED_HEIGHT) == set(PRESETS)
    for preset, height in RECOMMENDED_HEIGHT.items():
        assert build_model(preset, num_classes=5, height=height).height == height
