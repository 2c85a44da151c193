import dataclasses
import pickle

import numpy as np
import pytest

from vhrmodel.augment import (
    PAD_VALUE,
    AugmentConfig,
    BatchAugmenter,
    augment_batch,
    augment_image,
    min_ctc_width,
)


def line_image(width: int, height: int = 32, seed: int = 0) -> np.ndarray:
    """A white line with a few dark strokes, like a binarised handwriting crop."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 250, np.uint8)
    for x in range(4, width - 6, 9):
        y0 = int(rng.integers(4, height // 2))
        img[y0 : y0 + height // 2, x : x + 3] = 20
    return img


def padded_batch(widths, height=32):
    wmax = max(widths)
    images = np.full((len(widths), height, wmax), PAD_VALUE, np.uint8)
    for i, w in enumerate(widths):
        images[i, :, :w] = line_image(w, height, seed=i)
    return images, np.array(widths, np.int32)


ALWAYS = AugmentConfig(**{f.name: 1.0 for f in dataclasses.fields(AugmentConfig) if f.name.startswith("p_")})


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(AugmentConfig) if f.name.startswith("p_")])
def test_each_transform_keeps_height_dtype_and_changes_pixels(name):
    cfg = dataclasses.replace(AugmentConfig.off(), **{name: 1.0})
    img = line_image(120)
    out = augment_image(img, np.random.default_rng(3), cfg)
    assert out.dtype == np.uint8
    assert out.shape[0] == img.shape[0]
    assert out.shape != img.shape or not np.array_equal(out, img)


def test_off_config_is_identity():
    images, widths = padded_batch([50, 80, 64])
    out, new_widths = augment_batch(images, widths, np.random.default_rng(0), AugmentConfig.off())
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(new_widths, widths)


@pytest.mark.parametrize("seed", range(5))
def test_batch_invariants_with_every_transform(seed):
    images, widths = padded_batch([40, 100, 73, 12])
    out, new_widths = augment_batch(images, widths, np.random.default_rng(seed), ALWAYS)
    assert out.dtype == np.uint8
    assert out.shape[:2] == images.shape[:2]
    assert new_widths.dtype == np.int32
    assert out.shape[2] == new_widths.max()
    for i, w in enumerate(new_widths):
        assert np.all(out[i, :, w:] == PAD_VALUE), "padding right of the real width must stay white"
    # the input batch is not modified in place
    np.testing.assert_array_equal(images, padded_batch([40, 100, 73, 12])[0])


def test_stretch_updates_widths():
    cfg = dataclasses.replace(AugmentConfig.off(), p_stretch=1.0, stretch_range=(1.5, 1.5))
    images, widths = padded_batch([40, 60])
    out, new_widths = augment_batch(images, widths, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(new_widths, [60, 90])
    assert out.shape == (2, 32, 90)
    # the squeezed-in ink ends where the new width says, not at the old one
    assert out[0, :, 40:60].min() < 128


def test_stretch_never_makes_a_line_ctc_infeasible():
    cfg = dataclasses.replace(AugmentConfig.off(), p_stretch=1.0, stretch_range=(0.2, 0.2))
    images, widths = padded_batch([60, 60])
    labels = np.array([[1, 1, 2, 3, 0, 0], [4, 5, 0, 0, 0, 0]], np.int32)
    _, new_widths = augment_batch(images, widths, np.random.default_rng(0), cfg, labels=labels)
    assert new_widths[0] >= min_ctc_width(labels[0], 4) == 20  # 4 chars + 1 repeat
    assert new_widths[1] == 12  # 60 * 0.2 is already feasible for 2 chars (8 px)


def test_max_width_caps_the_result():
    cfg = dataclasses.replace(ALWAYS, stretch_range=(2.0, 2.0), max_width=100)
    images, widths = padded_batch([90])
    _, new_widths = augment_batch(images, widths, np.random.default_rng(0), cfg)
    assert new_widths[0] <= 100


def test_min_ctc_width_counts_repeats():
    assert min_ctc_width([1, 2, 3], 4) == 12
    assert min_ctc_width([1, 1, 1, 0, 0], 4) == 20
    assert min_ctc_width([], 4) == 0


def test_deterministic_per_seed_and_varies_across_seeds_and_epochs():
    images, widths = padded_batch([70, 90, 33])

    @dataclasses.dataclass
    class Batch:
        images: np.ndarray
        widths: np.ndarray
        ids: list

    batch = Batch(images, widths, ["a", "b", "c"])
    first = BatchAugmenter(ALWAYS, seed=7)(batch)
    again = BatchAugmenter(ALWAYS, seed=7)(batch)
    other = BatchAugmenter(ALWAYS, seed=8)(batch)
    next_epoch = BatchAugmenter(ALWAYS, seed=7)
    next_epoch.set_epoch(1)
    later = next_epoch(batch)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.widths, again.widths)
    assert first.images.shape != other.images.shape or not np.array_equal(first.images, other.images)
    assert first.images.shape != later.images.shape or not np.array_equal(first.images, later.images)
    assert batch.images is images  # the original batch object is left alone
    # an explicit generator (what the store reader passes) decides alone
    np.testing.assert_array_equal(
        BatchAugmenter(ALWAYS, seed=1)(batch, np.random.default_rng(5)).images,
        BatchAugmenter(ALWAYS, seed=2)(batch, np.random.default_rng(5)).images,
    )


def test_augmenter_pickles_for_worker_processes():
    aug = BatchAugmenter(AugmentConfig(p_noise=1.0), seed=3)
    clone = pickle.loads(pickle.dumps(aug))
    images, widths = padded_batch([30, 50])
    a = aug.augment_arrays(images, widths, np.random.default_rng(1))
    b = clone.augment_arrays(images, widths, np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])


def test_config_validation_and_dict_round_trip():
    with pytest.raises(ValueError, match="p_blur"):
        AugmentConfig(p_blur=1.5)
    with pytest.raises(ValueError, match="stretch_range"):
        AugmentConfig(stretch_range=(1.2, 0.8))
    cfg = AugmentConfig(p_noise=0.1, stretch_range=(0.9, 1.1))
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        AugmentConfig.from_dict({"p_nosie": 0.1})


def test_rejects_non_uint8_batches():
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(np.zeros((1, 8, 8), np.float32), np.array([8]), np.random.default_rng(0), AugmentConfig())


# --- camera effects ---------------------------------------------------------------------------

CAMERA_FIELDS = ["p_illumination", "p_shadow", "p_ruled", "p_perspective", "p_motion_blur", "p_jpeg"]


def test_min_ctc_width_is_the_one_in_vhrdata_ctc():
    from vhrdata import ctc

    assert min_ctc_width is ctc.min_ctc_width


def test_camera_effects_are_off_by_default_and_on_with_camera():
    default = AugmentConfig()
    assert all(getattr(default, f) == 0.0 for f in CAMERA_FIELDS)
    cam = AugmentConfig.with_camera(0.4)
    assert all(getattr(cam, f) == 0.4 for f in CAMERA_FIELDS)
    assert AugmentConfig.from_dict(cam.to_dict()) == cam
    with pytest.raises(ValueError, match="p_jpeg"):
        AugmentConfig(p_jpeg=2.0)
    with pytest.raises(ValueError, match="shadow"):
        AugmentConfig(shadow=(0.5, 0.1))


@pytest.mark.parametrize("seed", range(4))
def test_camera_batches_keep_dtype_height_padding_and_ctc_width(seed):
    cfg = dataclasses.replace(AugmentConfig.with_camera(1.0), p_stretch=1.0, stretch_range=(0.3, 0.5))
    images, widths = padded_batch([60, 90, 120])
    labels = np.array([[1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                       [4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0]])
    out, new_widths = augment_batch(images, widths, np.random.default_rng(seed), cfg, labels=labels)
    assert out.dtype == np.uint8 and out.shape[:2] == images.shape[:2]
    for i in range(3):
        assert new_widths[i] >= min_ctc_width(labels[i], cfg.downsample)
        assert (out[i, :, new_widths[i]:] == PAD_VALUE).all()
    again, _ = augment_batch(images, widths, np.random.default_rng(seed), cfg, labels=labels)
    assert np.array_equal(out, again)


def test_camera_effects_darken_the_paper():
    images, widths = padded_batch([200] * 8)
    cfg = dataclasses.replace(AugmentConfig.off(), p_illumination=1.0)
    out, _ = augment_batch(images, widths, np.random.default_rng(0), cfg)
    assert np.median(out) < np.median(images)


def test_augment_module_imports_no_keras():
    import subprocess
    import sys

    code = "import sys, vhrmodel.augment; print([m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_flatten_background_ends_the_augmentation_as_predict_ends_preprocessing():
    from vhrdata.preprocess import flatten_background

    img = line_image(300)
    shaded = dataclasses.replace(AugmentConfig.off(), p_illumination=1.0, p_shadow=1.0, illumination_base=(0.6, 0.7))
    flat = dataclasses.replace(shaded, flatten_background=True)
    for seed in range(4):
        plain = augment_image(img, np.random.default_rng(seed), shaded)
        out = augment_image(img, np.random.default_rng(seed), flat)
        # the same random draws, then exactly predict's flattening
        assert np.array_equal(out, flatten_background(plain))
        # the shaded paper comes back white; the ink stays dark
        assert np.median(plain) < 200 <= np.median(out)
        assert out[img < 100].mean() < 100
    assert AugmentConfig.from_dict(flat.to_dict()) == flat and not AugmentConfig().flatten_background
