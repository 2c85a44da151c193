"""The one image decoder: every mode decodes the same at ingest, build and predict (issues 9 and 10)."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vhrdata.cli import main
from vhrdata.errors import ImageDecodeError
from vhrdata.images import SizeLimits, check_image, check_image_bytes, decode_image, rgb_to_gray
from vhrdata.preprocess import PreprocessSettings, decode_gray, preprocess_image
from vhrdata.quarantine import Reason
from vhrdata.records import read_records
from vhrdata.store import open_store

SETTINGS = PreprocessSettings(height=32, max_width=1024)


def ink_mask(h: int = 40, w: int = 160) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for x in range(8, w - 12, 18):
        m[8 : h - 8, x : x + 4] = True
        m[h // 2 : h // 2 + 3, x : x + 12] = True
    return m


def colour_line(h: int = 40, w: int = 160) -> np.ndarray:
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[...] = (235, 225, 200)  # cream paper
    rgb[ink_mask(h, w)] = (20, 30, 120)  # blue ink
    return rgb


def save(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def make_images(d: Path) -> dict[str, Path]:
    rgb = colour_line()
    files = {}
    files["colour.jpg"] = save(Image.fromarray(rgb), d / "colour.jpg", quality=92)
    # Stored sideways, with EXIF orientation 6 ("rotate 90° CW to view"): upright it is 160 × 40.
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    files["rotated.jpg"] = save(sideways, d / "rotated.jpg", quality=92, exif=exif.tobytes())
    rgba = np.zeros((40, 160, 4), np.uint8)  # black everywhere, ink only in the alpha channel
    rgba[..., 3] = np.where(ink_mask(), 255, 0)
    files["alpha.png"] = save(Image.fromarray(rgba, "RGBA"), d / "alpha.png")
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.info["transparency"] = 0
    files["palette.png"] = save(pal, d / "palette.png", transparency=0)
    g16 = (rgb_to_gray(rgb).astype(np.uint16) * 257)
    files["gray16.png"] = save(Image.fromarray(g16), d / "gray16.png")
    files["cmyk.jpg"] = save(Image.fromarray(rgb).convert("CMYK"), d / "cmyk.jpg", quality=92)
    return files


def test_modes_come_out_as_dark_ink_on_white(tmp_path):
    files = make_images(tmp_path)
    mask = ink_mask()
    for name, path in files.items():
        gray = decode_image(path)
        assert gray.dtype == np.uint8 and gray.shape == (40, 160), name
        if name != "palette.png":  # (palette index 0 is transparent: some paper turns white)
            assert gray[mask].mean() < 90, name
            assert gray[~mask].mean() > 180, name
    alpha = decode_image(files["alpha.png"])
    assert alpha[mask].max() == 0 and alpha[~mask].min() == 255  # composited onto white, not black
    assert Image.open(files["gray16.png"]).mode.startswith("I")
    np.testing.assert_array_equal(decode_image(files["gray16.png"]), rgb_to_gray(colour_line()))


def test_exif_orientation_is_applied_and_recorded(tmp_path):
    files = make_images(tmp_path)
    check = check_image(str(files["rotated.jpg"]))
    assert check.ok and (check.width, check.height) == (160, 40)
    upright = decode_image(files["colour.jpg"])
    rotated = decode_image(files["rotated.jpg"])
    assert rotated.shape == upright.shape
    assert np.abs(rotated.astype(int) - upright.astype(int)).mean() < 8


def test_arrays_are_rgb_and_match_files_exactly(tmp_path):
    rgb = colour_line()
    path = save(Image.fromarray(rgb), tmp_path / "x.png")
    np.testing.assert_array_equal(decode_image(path), decode_image(rgb))
    np.testing.assert_array_equal(decode_gray(rgb), np.asarray(Image.fromarray(rgb).convert("L")))
    bgr = rgb[..., ::-1]
    assert not np.array_equal(decode_gray(bgr), decode_gray(rgb))  # documented: arrays are RGB, never BGR
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(decode_image(rgba), decode_image(rgb))


def test_limits_are_checked_from_the_header(tmp_path):
    wide = save(Image.new("L", (20_001, 10), 255), tmp_path / "wide.png")
    check = check_image(str(wide))
    assert not check.ok and check.reason == Reason.IMAGE_TOO_LARGE
    with pytest.raises(ImageDecodeError) as info:
        decode_image(wide.read_bytes())
    assert info.value.reason == Reason.IMAGE_TOO_LARGE and "not decoded" in str(info.value)
    header_only = check_image_bytes(wide.read_bytes(), SizeLimits(), decode=False)
    assert header_only.reason == Reason.IMAGE_TOO_LARGE
    assert check_image_bytes(wide.read_bytes(), SizeLimits(max_width=30_000)).ok


def test_truncated_fifo_and_oversized_files_are_refused(tmp_path):
    files = make_images(tmp_path)
    data = files["colour.jpg"].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError) as info:
        preprocess_image(cut, SETTINGS)
    assert info.value.reason == Reason.TRUNCATED_IMAGE
    assert check_image(str(cut)).reason == Reason.TRUNCATED_IMAGE
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("check", check_image(str(fifo))), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "check_image blocked on a FIFO"
    assert result["check"].reason == Reason.NOT_A_REGULAR_FILE
    with pytest.raises(ImageDecodeError) as info:
        decode_image(files["colour.jpg"], max_bytes=100)
    assert info.value.reason == Reason.FILE_TOO_LARGE
    with pytest.raises(ImageDecodeError) as info:
        decode_image(tmp_path / "absent.png")
    assert info.value.reason == Reason.MISSING_IMAGE


def test_build_and_predict_give_identical_tensors(tmp_path):
    """colour JPEG, EXIF-rotated JPEG, RGBA PNG, palette PNG, 16-bit PNG and CMYK JPEG through
    `vhrdata ingest`, `vhrdata split`, `vhrdata build-lmdb` and through `preprocess_image(path)`."""
    src = tmp_path / "src"
    files = make_images(src)
    lines = ["path,text"] + [f"{name},dòng {i}" for i, name in enumerate(files)]
    (src / "list.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(main, ["ingest", str(src / "list.csv"), "--out", str(tmp_path / "rec")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["split", str(tmp_path / "rec"), "--ratios", "1,0,0"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["build-lmdb", str(tmp_path / "rec"), "--out", str(tmp_path / "store"),
                               "--height", "32", "--max-width", "1024", "--workers", "1", "--downsample", "1"])
    assert res.exit_code == 0, res.output
    df = read_records(tmp_path / "rec")
    assert len(df) == len(files)
    rotated = df[df["path"].str.endswith("rotated.jpg")].iloc[0]
    assert (int(rotated["width"]), int(rotated["height"])) == (160, 40)  # ingest records the upright size
    path_of = dict(zip(df["id"].astype(str), df["path"].astype(str)))
    store = open_store(tmp_path / "store")
    assert store.index["counts"]["stored"] == len(files)
    seen = set()
    for sample in store.split("train"):
        expected = preprocess_image(path_of[sample.id], store.settings)
        np.testing.assert_array_equal(sample.image, expected, err_msg=path_of[sample.id])
        seen.add(Path(path_of[sample.id]).name)
    assert seen == set(files)


def test_bytes_and_paths_decode_the_same(tmp_path):
    for name, path in make_images(tmp_path).items():
        np.testing.assert_array_equal(decode_image(path), decode_image(path.read_bytes()), err_msg=name)
        np.testing.assert_array_equal(decode_image(path), decode_image(io.BytesIO(path.read_bytes()).getvalue()))
