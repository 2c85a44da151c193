"""Image checks for ingest: read the bytes once, hash them, read the header, then decode.

The header is read before any pixel is decoded, so a file that claims 40,000 × 30,000 pixels is refused
without allocating that memory.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from vhrdata.quarantine import Reason

# Formats a line image may come in. Anything else Pillow can open (PDF, PSD, EPS, ...) is refused.
IMAGE_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "JPEG2000"}


@dataclass(frozen=True)
class SizeLimits:
    """Accepted image sizes in pixels (inclusive).

    Args:
        min_width, min_height: smaller images cannot hold a text line.
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
    """The outcome of checking one image: size and hash when good, a reason and message when not."""

    path: str
    ok: bool
    width: int = 0
    height: int = 0
    sha1: str = ""
    reason: Reason | None = None
    message: str = ""


def check_image(path: str, limits: SizeLimits = SizeLimits()) -> ImageCheck:
    """Check that `path` is a decodable image of acceptable size; never raises for bad files."""

    def bad(reason: Reason, message: str, **kw) -> ImageCheck:
        return ImageCheck(path=path, ok=False, reason=reason, message=message, **kw)

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return bad(Reason.MISSING_IMAGE, f"image file not found: {path}")
    except IsADirectoryError:
        return bad(Reason.NOT_AN_IMAGE, f"path is a folder, not an image: {path}")
    except OSError as ex:
        return bad(Reason.UNREADABLE_FILE, f"cannot read {path}: {ex.strerror or ex}")
    if not data:
        return bad(Reason.EMPTY_FILE, f"image file is empty (0 bytes): {path}")
    sha1 = hashlib.sha1(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as ex:
        return bad(Reason.IMAGE_TOO_LARGE, f"image too large: its header claims too many pixels ({ex}); "
                   "refused before decoding", sha1=sha1)
    except UnidentifiedImageError:
        return bad(Reason.NOT_AN_IMAGE, f"not an image file (unknown format, {len(data)} bytes): {path}", sha1=sha1)
    except Exception as ex:  # malformed headers raise many exception types
        return bad(Reason.UNDECODABLE_IMAGE, f"cannot read image header: {ex}", sha1=sha1)
    w, h = im.size
    if im.format not in IMAGE_FORMATS:
        return bad(Reason.NOT_AN_IMAGE, f"{im.format} file is not a raster line image: {path}", sha1=sha1)
    if w > limits.max_width or h > limits.max_height or w * h > limits.max_pixels:
        return bad(
            Reason.IMAGE_TOO_LARGE,
            f"image is {w}×{h} px, over the limit of {limits.max_width}×{limits.max_height} px "
            f"and {limits.max_pixels:,} pixels (checked from the header, not decoded)",
            width=w, height=h, sha1=sha1,
        )
    if w < limits.min_width or h < limits.min_height:
        return bad(
            Reason.IMAGE_TOO_SMALL,
            f"image is {w}×{h} px, under the minimum of {limits.min_width}×{limits.min_height} px",
            width=w, height=h, sha1=sha1,
        )
    try:
        im.load()
    except OSError as ex:
        msg = str(ex)
        if "truncated" in msg or "broken data stream" in msg or "end of file" in msg.lower():
            return bad(Reason.TRUNCATED_IMAGE, f"image data is truncated: {msg}", width=w, height=h, sha1=sha1)
        return bad(Reason.UNDECODABLE_IMAGE, f"image does not decode: {msg}", width=w, height=h, sha1=sha1)
    except Exception as ex:
        return bad(Reason.UNDECODABLE_IMAGE, f"image does not decode: {ex}", width=w, height=h, sha1=sha1)
    return ImageCheck(path=path, ok=True, width=w, height=h, sha1=sha1)
