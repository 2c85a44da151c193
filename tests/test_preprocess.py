"""Preprocessing: settings identity, every input kind, resizing, capping, binarisation, cropping."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vhrdata.errors import ImageDecodeError
from vhrdata.quarantine import Reason
from vhrdata.preprocess import (
    PAD_VALUE,
    PreprocessSettings,
    crop_to_ink,
    output_width,
    preprocess_gray,
    preprocess_image,
)


def line_image(height=40, width=300, paper=225, ink=30, seed=0, margin=0):
    rng = np.random.default_rng(seed)
    img = np.full((height, width), paper, np.uint8)
    for _ in range(width // 10):
        x = int(rng.integers(margin, max(margin + 1, width - margin - 8)))
        y0, y1 = (int(v) for v in rng.integers(margin + 2, max(margin + 3, height - margin - 2), 2))
        cv2.line(img, (x, y0), (x + 6, y1), ink, 2)
    return img


def test_settings_json_is_canonical_and_round_trips():
    s = PreprocessSettings(height=48, max_width=1024, binarize="otsu", crop_margins=True)
    text = s.to_json()
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert " " not in text
    assert PreprocessSettings.from_json(text) == s
    assert s.hash() == PreprocessSettings(height=48, max_width=1024, binarize="otsu", crop_margins=True).hash()
    assert len(s.hash()) == 64


@pytest.mark.parametrize(
    "change", [{"height": 32}, {"max_width": 1000}, {"binarize": "adaptive"}, {"crop_margins": True},
               {"normalize_contrast": True}],
)
def test_every_setting_changes_the_hash(change):
    assert PreprocessSettings(**change).hash() != PreprocessSettings().hash()
    assert PreprocessSettings(**change).diff(PreprocessSettings()) != []


@pytest.mark.parametrize(
    "kwargs,name",
    [({"height": 4}, "height"), ({"max_width": 10}, "max_width"), ({"binarize": "sauvola"}, "binarize"),
     ({"crop_margins": "yes"}, "crop_margins")],
)
def test_invalid_settings_name_what_was_received(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        PreprocessSettings(**kwargs)


def test_unknown_settings_key_is_refused():
    with pytest.raises(ValueError, match="unknown preprocessing settings"):
        PreprocessSettings.from_dict({"height": 64, "deskew": True})


def test_path_bytes_and_arrays_give_identical_output(tmp_path):
    img = line_image()
    path = tmp_path / "line.png"
    cv2.imwrite(str(path), img)
    s = PreprocessSettings(height=32)
    from_path = preprocess_image(path, s)
    assert from_path.dtype == np.uint8 and from_path.flags.c_contiguous
    assert from_path.shape == (32, round(300 * 32 / 40))
    np.testing.assert_array_equal(from_path, preprocess_image(str(path), s))
    np.testing.assert_array_equal(from_path, preprocess_image(path.read_bytes(), s))
    np.testing.assert_array_equal(from_path, preprocess_image(img, s))
    np.testing.assert_array_equal(from_path, preprocess_image(np.stack([img] * 3, axis=-1), s))
    np.testing.assert_array_equal(from_path, preprocess_image(img[:, :, None], s))
    np.testing.assert_array_equal(from_path, preprocess_image(img.astype(np.float32) / 255.0, s))


def test_default_settings_apply():
    assert preprocess_image(line_image(height=128, width=256)).shape == (64, 128)


def test_small_images_are_enlarged():
    out = preprocess_image(line_image(height=16, width=50), PreprocessSettings(height=64))
    assert out.shape == (64, 200)


def test_wide_lines_are_capped_and_reported():
    s = PreprocessSettings(height=32, max_width=100)
    gray = line_image(height=32, width=500)
    out, capped = preprocess_gray(gray, s)
    assert out.shape == (32, 100) and capped
    assert output_width(32, 500, s) == (100, True)
    assert output_width(32, 64, s) == (64, False)


@pytest.mark.parametrize("mode", ["otsu", "adaptive"])
def test_binarize_gives_black_ink_on_white(mode):
    out = preprocess_image(line_image(), PreprocessSettings(height=32, binarize=mode))
    assert set(np.unique(out)) <= {0, 255}
    # Paper dominates a text line: most pixels must come out white, the strokes black.
    assert (out == 255).mean() > 0.5 and (out == 0).any()


def test_crop_margins_cuts_empty_paper():
    img = np.full((100, 600), 230, np.uint8)
    img[40:60, 200:400] = line_image(20, 200, paper=230)
    img[45:55, 210:390] = 20
    cropped = crop_to_ink(img)
    assert cropped.shape[0] < 40 and cropped.shape[1] < 260
    with_crop = preprocess_image(img, PreprocessSettings(height=32, crop_margins=True))
    without = preprocess_image(img, PreprocessSettings(height=32))
    assert with_crop.shape[1] > without.shape[1]  # the line now fills the height, so it is wider
    assert (with_crop < 100).mean() > (without < 100).mean()


def test_crop_margins_keeps_a_blank_image():
    blank = np.full((40, 100), 240, np.uint8)
    assert crop_to_ink(blank).shape == (40, 100)


def test_normalize_contrast_stretches_to_black_and_white():
    faint = line_image(paper=180, ink=140)
    out = preprocess_image(faint, PreprocessSettings(height=40, normalize_contrast=True))
    assert out.min() < 20 and np.median(out) == 255
    plain = preprocess_image(faint, PreprocessSettings(height=40))
    assert plain.min() >= 100


def test_undecodable_inputs_raise(tmp_path):
    with pytest.raises(ImageDecodeError, match="does not exist"):
        preprocess_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageDecodeError, match="not an image") as info:
        preprocess_image(bad)
    assert info.value.reason == Reason.NOT_AN_IMAGE
    with pytest.raises(ImageDecodeError) as info:
        preprocess_image(b"")
    assert info.value.reason == Reason.EMPTY_FILE
    with pytest.raises(ImageDecodeError, match="shape"):
        preprocess_image(np.zeros((4, 4, 2), np.uint8))


def test_pad_value_is_white():
    assert PAD_VALUE == 255


def test_flatten_background_is_off_by_default_and_keeps_old_hashes():
    old = {"height": 64, "max_width": 2048, "binarize": "none", "crop_margins": False, "normalize_contrast": False}
    s = PreprocessSettings.from_dict(old)
    assert s.flatten_background is False
    assert s.to_dict() == old  # old stores' settings JSON and hash are unchanged
    on = PreprocessSettings(flatten_background=True)
    assert on.to_dict()["flatten_background"] is True and on.hash() != s.hash()
    assert PreprocessSettings.from_json(on.to_json()) == on
    assert on.diff(s) == ["flatten_background True != False"]
    assert "--flatten-background" in on.cli_flags() and "--flatten-background" not in s.cli_flags()


def test_flatten_background_turns_a_shaded_photo_into_dark_ink_on_white():
    h, w = 96, 480
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # grey paper, lit from the left, with a shadow band across the lower part
    paper = 200 - 110 * (xx / w) - 30 * (yy > 0.6 * h)
    img = paper.copy()
    ink = np.zeros((h, w), bool)
    for x0 in range(20, w - 30, 40):  # strokes: vertical bars and a cross bar per "letter"
        ink[25:70, x0 : x0 + 5] = True
        ink[45:50, x0 : x0 + 22] = True
    img[ink] *= 0.35  # ink is darker than its local paper, whatever the light
    img = np.clip(img, 0, 255).astype(np.uint8)
    s = PreprocessSettings(height=48, flatten_background=True)
    out = preprocess_image(img, s)
    small_ink = cv2.resize(ink.astype(np.uint8), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_AREA) > 0
    small_paper = cv2.resize((~ink).astype(np.uint8), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    core_paper = small_paper & ~cv2.dilate(small_ink.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.median(out[core_paper]) >= 245  # near-white background everywhere, shadow included
    assert np.percentile(out[core_paper], 5) >= 200
    assert np.median(out[small_ink]) <= 80  # dark ink
    plain = preprocess_image(img, PreprocessSettings(height=48))
    assert np.median(plain[core_paper]) < 200  # without flattening the paper stays grey
