"""The one image decoder of vhr: ingest checks, store builds and predict all decode through here.

`decode_image(source, limits)` turns a path, encoded bytes or an array into a uint8 grayscale
array, the same way everywhere:

1. a path is `os.stat`-ed first (a FIFO or device is never opened) and read with a byte cap;
2. the header is read and its (EXIF-oriented) size checked against `SizeLimits` before any pixel
   is decoded, so a file that claims 40,000 × 30,000 pixels costs no memory;
3. the pixels are decoded (a truncated file is an error, never a guess), the EXIF orientation is
   applied (`PIL.ImageOps.exif_transpose`);
4. every mode becomes gray by one rule: CMYK/YCbCr/palette → RGB; 16-bit → 8 bit (`>> 8`);
   RGB → luminance with ITU-R 601 weights (Pillow's fixed-point `L` conversion, reproduced for
   arrays); alpha (RGBA, LA, palette transparency) is composited onto WHITE, so dark ink drawn
   only in the alpha channel comes out dark on white.

Arrays are taken as gray (H×W, H×W×1), RGB (H×W×3) or RGBA (H×W×4) — the order Pillow, Keras and
`imageio` deliver. An OpenCV `cv2.imread` result is BGR: convert it first
(`cv2.cvtColor(a, cv2.COLOR_BGR2RGB)`) or pass the file path instead.

Every failure is an `ImageDecodeError` whose `reason` attribute is a `Reason` (missing_image,
not_a_regular_file, file_too_large, empty_file, not_an_image, image_too_large, truncated_image,
undecodable_image); `check_image` and `check_image_bytes` turn them into an `ImageCheck` instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from vhrdata.errors import ImageDecodeError
from vhrdata.quarantine import Reason
from vhrdata.raw_formats import DEFAULT_MAX_FILE_BYTES, FileProblem, read_capped

# Formats a line image may come in. Anything else Pillow can open (PDF, PSD, EPS, ...) is refused.
IMAGE_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "JPEG2000"}

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

# EXIF orientations 5-8 turn the image by 90°: width and height swap.
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class SizeLimits:
    """Accepted image sizes in pixels (inclusive), after EXIF orientation.

    Args:
        min_width, min_height: smaller images cannot hold a text line (checked by `check_image`,
            not by `decode_image`, which predict also uses on small crops).
        max_width, max_height: larger images are refused from the header alone.
        max_pixels: refuse images whose width × height is larger, whatever their shape.
    """

    min_width: int = 8
    min_height: int = 8
    max_width: int = 20_000
    max_height: int = 4_000
    max_pixels: int = 40_000_000

    def __post_init__(self):
        for name in ("min_width", "min_height", "max_width", "max_height", "max_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")


@dataclass
class ImageCheck:
    """The outcome of checking one image: oriented size and hash when good, a reason and message when not."""

    path: str
    ok: bool
    width: int = 0
    height: int = 0
    sha1: str = ""
    reason: Reason | None = None
    message: str = ""


def _error(reason: Reason, message: str, width: int = 0, height: int = 0) -> ImageDecodeError:
    ex = ImageDecodeError(message)
    ex.reason = reason
    ex.width, ex.height = width, height
    return ex


def read_image_file(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of an image file: stat first (never opens a FIFO or device), at most `max_bytes`."""
    path = os.fspath(path)
    try:
        data = read_capped(path, max_bytes, "image")
    except FileProblem as ex:
        reason = Reason.MISSING_IMAGE if ex.reason == Reason.UNREADABLE_FILE and not os.path.lexists(path) else ex.reason
        if reason == Reason.MISSING_IMAGE:
            raise _error(reason, f"{path} does not exist") from None
        raise _error(reason, ex.message) from None
    if not data:
        raise _error(Reason.EMPTY_FILE, f"image file is empty (0 bytes): {path}")
    return data


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of `im` once its EXIF orientation is applied; reads the header only."""
    w, h = im.size
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block is ignored, as exif_transpose ignores it
        orientation = None
    return (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)


def open_image(data: bytes, limits: SizeLimits | None = None, name: str = "<bytes>") -> tuple[Image.Image, int, int]:
    """Open encoded bytes and check the header: (lazy Pillow image, oriented width, oriented height).

    No pixel is decoded here. Raises ImageDecodeError (not_an_image, image_too_large, undecodable_image).
    """
    limits = limits or SizeLimits()
    if not len(data):
        raise _error(Reason.EMPTY_FILE, f"image is empty (0 bytes): {name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as ex:
        raise _error(Reason.IMAGE_TOO_LARGE, f"image too large: its header claims too many pixels ({ex}); "
                     "refused before decoding") from None
    except UnidentifiedImageError:
        raise _error(Reason.NOT_AN_IMAGE, f"not an image file (unknown format, {len(data)} bytes): {name}") from None
    except Exception as ex:  # malformed headers raise many exception types
        raise _error(Reason.UNDECODABLE_IMAGE, f"cannot read image header of {name}: {ex}") from None
    if im.format not in IMAGE_FORMATS:
        raise _error(Reason.NOT_AN_IMAGE, f"{im.format} file is not a raster line image: {name}")
    w, h = oriented_size(im)
    if w > limits.max_width or h > limits.max_height or w * h > limits.max_pixels:
        raise _error(
            Reason.IMAGE_TOO_LARGE,
            f"image is {w}×{h} px, over the limit of {limits.max_width}×{limits.max_height} px "
            f"and {limits.max_pixels:,} pixels (checked from the header, not decoded): {name}",
            w, h,
        )
    return im, w, h


def _load(im: Image.Image, name: str, w: int, h: int) -> Image.Image:
    truncated_setting = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a guess
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # unreadable EXIF: keep the pixels as stored
                pass
    except OSError as ex:
        msg = str(ex)
        if "truncated" in msg or "broken data stream" in msg or "end of file" in msg.lower():
            raise _error(Reason.TRUNCATED_IMAGE, f"image data is truncated: {msg}: {name}", w, h) from None
        raise _error(Reason.UNDECODABLE_IMAGE, f"image does not decode: {msg}: {name}", w, h) from None
    except Exception as ex:
        raise _error(Reason.UNDECODABLE_IMAGE, f"image does not decode: {ex}: {name}", w, h) from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_setting
    return im


def pil_to_gray(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image as uint8 gray by vhr's one rule (see the module docstring)."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "La"):
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode in ("1",):
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    mode = im.mode
    if mode == "L":
        return np.array(im, dtype=np.uint8)
    if mode == "RGB":
        return np.array(im.convert("L"), dtype=np.uint8)  # same fixed-point weights as `rgb_to_gray`
    if mode == "RGBA":
        return array_to_gray(np.asarray(im))
    if mode == "LA":
        a = np.asarray(im)
        return composite_on_white(a[..., 0], a[..., 1])
    if mode.startswith("I;16") or mode in ("I", "F"):
        return array_to_gray(np.asarray(im))
    return np.array(im.convert("L"), dtype=np.uint8)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luminance of a uint8 H×W×3 RGB array: Pillow's ITU-R 601 fixed-point rule, bit for bit."""
    r = rgb[..., 0].astype(np.uint32)
    g = rgb[..., 1].astype(np.uint32)
    b = rgb[..., 2].astype(np.uint32)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def composite_on_white(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Gray over a white background with `alpha` coverage (0 = transparent → white)."""
    g = gray.astype(np.uint32)
    a = alpha.astype(np.uint32)
    return ((g * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def array_to_gray(a: np.ndarray) -> np.ndarray:
    """A decoded array (gray, RGB or RGBA, never BGR; uint8, uint16, bool, int or float) as uint8 gray."""
    if not isinstance(a, np.ndarray):
        raise _error(Reason.UNDECODABLE_IMAGE, f"expected a numpy array. Received: {type(a).__name__}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        scale = 255.0 if a.size and float(np.nanmax(a)) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a) * scale, 0, 255).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer) and a.dtype != np.uint8:
        # 32-bit integer images (Pillow mode "I") hold 16-bit samples when above 255.
        if a.size and int(a.max()) > 255:
            a = (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise _error(Reason.UNDECODABLE_IMAGE, f"unsupported array dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] in (3, 4) and a.size:
        gray = rgb_to_gray(a)
        return composite_on_white(gray, a[..., 3]) if a.shape[2] == 4 else gray
    if a.ndim != 2 or a.size == 0:
        raise _error(Reason.UNDECODABLE_IMAGE,
                     f"expected a 2-D image or H×W×(1|3|4) array. Received: shape={a.shape}")
    return np.ascontiguousarray(a)


def decode_image(
    source: ImageSource, limits: SizeLimits | None = None, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> np.ndarray:
    """Decode a path, encoded bytes or an array to a 2-D uint8 grayscale array, dark ink on white.

    Args:
        source: a file path, encoded image bytes, or a decoded array (gray, RGB or RGBA; never BGR).
        limits: the header is checked against these before decoding; defaults to `SizeLimits()`.
            The minimum sizes are not applied here (see `check_image`).
        max_bytes: a file larger than this is not read (file_too_large).

    Raises:
        ImageDecodeError: with `.reason` a `Reason`.
    """
    if isinstance(source, np.ndarray):
        return array_to_gray(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), f"<{len(source)} bytes>"
        if not data:
            raise _error(Reason.EMPTY_FILE, "cannot decode 0 bytes as an image")
        if len(data) > max_bytes:
            raise _error(Reason.FILE_TOO_LARGE, f"image of {len(data)} bytes is over the limit of {max_bytes} bytes")
    else:
        name = os.fspath(source)
        data = read_image_file(name, max_bytes)
    im, w, h = open_image(data, limits, name)
    return _decode_opened(im, name, w, h)


def _decode_opened(im: Image.Image, name: str, w: int, h: int) -> np.ndarray:
    im = _load(im, name, w, h)
    try:
        gray = pil_to_gray(im)
    except ImageDecodeError:
        raise
    except Exception as ex:
        raise _error(Reason.UNDECODABLE_IMAGE, f"image does not decode ({im.mode}): {ex}: {name}", w, h) from None
    if gray.ndim != 2 or gray.size == 0:
        raise _error(Reason.UNDECODABLE_IMAGE, f"image decodes to shape {gray.shape}: {name}", w, h)
    return gray


def check_image_bytes(data: bytes, limits: SizeLimits = SizeLimits(), path: str = "<bytes>", *,
                      decode: bool = True) -> ImageCheck:
    """Check encoded image bytes without raising: header limits first, then (with `decode`) a full decode.

    The recorded width and height are the EXIF-oriented ones, the size `decode_image` returns.
    For an HTTP server: `check_image_bytes(body, limits, decode=False)` refuses a bomb from its header.
    """
    sha1 = hashlib.sha1(data).hexdigest() if data else ""
    try:
        im, w, h = open_image(data, limits, path)
    except ImageDecodeError as ex:
        return ImageCheck(path=path, ok=False, reason=ex.reason, message=str(ex), sha1=sha1,
                          width=getattr(ex, "width", 0), height=getattr(ex, "height", 0))
    if w < limits.min_width or h < limits.min_height:
        return ImageCheck(
            path=path, ok=False, reason=Reason.IMAGE_TOO_SMALL,
            message=f"image is {w}×{h} px, under the minimum of {limits.min_width}×{limits.min_height} px",
            width=w, height=h, sha1=sha1,
        )
    if decode:
        try:
            _decode_opened(im, path, w, h)
        except ImageDecodeError as ex:
            return ImageCheck(path=path, ok=False, reason=ex.reason, message=str(ex), width=w, height=h, sha1=sha1)
    return ImageCheck(path=path, ok=True, width=w, height=h, sha1=sha1)


def check_image(path: str, limits: SizeLimits = SizeLimits(), *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> ImageCheck:
    """Check that `path` is a decodable image of acceptable size; never raises for bad files.

    Decodes exactly as `decode_image` does (so ingest accepts what build and predict can read)
    and records the EXIF-oriented size.
    """
    try:
        data = read_image_file(path, max_bytes)
    except ImageDecodeError as ex:
        msg = str(ex)
        if ex.reason == Reason.MISSING_IMAGE:
            msg = f"image file not found: {path}"
        return ImageCheck(path=path, ok=False, reason=ex.reason, message=msg)
    return check_image_bytes(data, limits, path)
