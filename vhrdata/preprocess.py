"""Line-image preprocessing: the ONE function that training stores and prediction both use.

`preprocess_image` turns a file, encoded bytes or a decoded array into a uint8 H×W array,
dark ink on a white background, at a fixed height with the width following the aspect ratio.
Nothing is padded here; batches pad with `PAD_VALUE`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Union

import cv2
import numpy as np

from vhrdata.errors import ImageDecodeError  # noqa: F401  (raised by decode_gray)
from vhrdata.images import SizeLimits, decode_image

PAD_VALUE = 255
BINARIZE_MODES = ("none", "otsu", "adaptive")

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


@dataclass(frozen=True)
class PreprocessSettings:
    """How a line image becomes a model input. Written into every store and every trained model.

    Args:
        height: output height in pixels.
        max_width: widest output; wider lines are squeezed horizontally to this width.
        binarize: "none", "otsu" (global threshold) or "adaptive" (local Gaussian threshold).
        crop_margins: cut empty margins around the ink before resizing.
        normalize_contrast: stretch the grey levels so ink is black and paper is white.
        flatten_background: divide by a large-kernel estimate of the background (uneven light,
            shadows, grey paper), then stretch, so a shaded photo becomes dark ink on white.

    Example:
        >>> s = PreprocessSettings(height=48, binarize="otsu")
        >>> PreprocessSettings.from_json(s.to_json()) == s
        True
    """

    height: int = 64
    max_width: int = 2048
    binarize: str = "none"
    crop_margins: bool = False
    normalize_contrast: bool = False
    flatten_background: bool = False

    def __post_init__(self):
        if not isinstance(self.height, int) or self.height < 8:
            raise ValueError(f"height must be an integer >= 8. Received: height={self.height!r}")
        if not isinstance(self.max_width, int) or self.max_width < self.height:
            raise ValueError(
                f"max_width must be an integer >= height ({self.height}). Received: max_width={self.max_width!r}"
            )
        if self.binarize not in BINARIZE_MODES:
            raise ValueError(f"binarize must be one of {', '.join(BINARIZE_MODES)}. Received: binarize={self.binarize!r}")
        for name in ("crop_margins", "normalize_contrast", "flatten_background"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool. Received: {name}={getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Options added after the first release are written only when on, so settings that do not
        # use them keep the JSON and hash that stores and models made before them carry.
        for name, default in _LATER_OPTIONS.items():
            if d[name] == default:
                del d[name]
        return d

    def cli_flags(self) -> str:
        """The `vhrdata build-lmdb` options that build a store with these settings."""
        flags = [f"--height {self.height}", f"--max-width {self.max_width}", f"--binarize {self.binarize}"]
        flags.append("--crop-margins" if self.crop_margins else "--no-crop-margins")
        flags.append("--normalize-contrast" if self.normalize_contrast else "--no-normalize-contrast")
        if self.flatten_background:
            flags.append("--flatten-background")
        return " ".join(flags)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, so equal settings give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """sha256 hex of `to_json()`."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSettings":
        """Build settings from a dict; unknown keys are an error (a newer vhr wrote them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing settings {unknown}; this vhr knows {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "PreprocessSettings":
        return cls.from_dict(json.loads(s))

    def diff(self, other: "PreprocessSettings") -> list[str]:
        """Human-readable differences, e.g. ["height 48 != 64"]."""
        a, b = asdict(self), asdict(other)
        return [f"{k} {a[k]!r} != {b[k]!r}" for k in a if a[k] != b[k]]


# Fields added later, with the value that old settings (without the field) mean.
_LATER_OPTIONS = {"flatten_background": False}


def decode_gray(image: ImageInput, limits: SizeLimits | None = None) -> np.ndarray:
    """Decode a path, encoded bytes or an array to a 2-D uint8 grayscale array.

    The one decoder of vhr (`vhrdata.images.decode_image`): EXIF orientation, CMYK, 16-bit,
    palette and alpha (composited onto white) are handled the same at ingest, build and predict.
    Arrays are gray, RGB or RGBA — never BGR (convert an OpenCV `imread` result with
    `cv2.cvtColor(a, cv2.COLOR_BGR2RGB)`, or pass the path).

    Raises:
        ImageDecodeError: with `.reason` a `vhrdata.quarantine.Reason`.
    """
    return decode_image(image, limits)


def output_width(height: int, width: int, settings: PreprocessSettings) -> tuple[int, bool]:
    """Width after resizing an image of `height`×`width`, and whether max_width capped it."""
    w = max(1, int(round(width * settings.height / height)))
    return (settings.max_width, True) if w > settings.max_width else (w, False)


def crop_to_ink(gray: np.ndarray) -> np.ndarray:
    """Cut empty margins around the ink (Otsu mask), keeping a small border; blank images are kept."""
    h, w = gray.shape
    thr, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = gray < thr
    # A few specks of scanner dust must not hold a margin open.
    min_count = 2
    rows = np.flatnonzero(np.count_nonzero(ink, axis=1) >= min_count)
    cols = np.flatnonzero(np.count_nonzero(ink, axis=0) >= min_count)
    if rows.size == 0 or cols.size == 0:
        return gray
    pad = max(2, h // 25)
    top, bottom = max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)
    left, right = max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)
    return gray[top:bottom, left:right]


def stretch_contrast(gray: np.ndarray, low_pct: float = 1.0, high_pct: float = 95.0) -> np.ndarray:
    """Map the `low_pct` percentile to black and the `high_pct` percentile (paper) to white."""
    hist = np.bincount(gray.ravel(), minlength=256).cumsum()
    total = hist[-1]
    lo = int(np.searchsorted(hist, total * low_pct / 100.0))
    hi = int(np.searchsorted(hist, total * high_pct / 100.0))
    if hi - lo < 8:  # flat image: stretching would only amplify noise
        return gray
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return cv2.LUT(gray, lut)


def flatten_background(gray: np.ndarray) -> np.ndarray:
    """Even out illumination: divide by a large-kernel background estimate, then stretch contrast.

    The background is a morphological close (which removes dark ink strokes narrower than the
    kernel) followed by a blur, with a kernel of about 3/4 of the line height, computed on a copy
    shrunk to at most 64 px high (the background varies slowly; this keeps it cheap). Paper maps to
    white whatever its shade, ink stays dark in proportion to its contrast with the local paper.
    """
    h, w = gray.shape
    if h < 4 or w < 4:
        return gray
    scale = min(1.0, 64.0 / h)
    small = gray if scale == 1.0 else cv2.resize(
        gray, (max(4, int(round(w * scale))), max(4, int(round(h * scale)))), interpolation=cv2.INTER_AREA
    )
    sh = small.shape[0]
    k = max(3, int(sh * 0.75) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    bg = cv2.GaussianBlur(bg, (k, k), 0, borderType=cv2.BORDER_REPLICATE)
    if bg.shape != gray.shape:
        bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    flat = gray.astype(np.float32) * 255.0 / np.maximum(bg.astype(np.float32), 1.0)
    flat = np.clip(flat, 0, 255).astype(np.uint8)
    return stretch_contrast(flat, low_pct=0.5, high_pct=60.0)


def _binarize(gray: np.ndarray, mode: str) -> np.ndarray:
    if mode == "otsu":
        return cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]
    if mode == "adaptive":
        # Window about half a line high: larger than a stroke, smaller than a shadow gradient.
        block = max(3, (gray.shape[0] // 2) | 1)
        return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block, 10)
    return gray


def preprocess_gray(gray: np.ndarray, settings: PreprocessSettings) -> tuple[np.ndarray, bool]:
    """`preprocess_image` on an already decoded grayscale array; also says whether the width was capped."""
    if settings.flatten_background:
        gray = flatten_background(gray)
    if settings.crop_margins:
        gray = crop_to_ink(gray)
    h, w = gray.shape
    out_w, capped = output_width(h, w, settings)
    out_h = settings.height
    if (out_h, out_w) != (h, w):
        # INTER_AREA averages when shrinking (no aliasing of thin strokes); it degrades to
        # nearest-like blocks when enlarging, where linear interpolation is the better choice.
        interp = cv2.INTER_AREA if out_h <= h else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (out_w, out_h), interpolation=interp)
    if settings.normalize_contrast:
        gray = stretch_contrast(gray)
    gray = _binarize(gray, settings.binarize)
    return np.ascontiguousarray(gray, dtype=np.uint8), capped


def preprocess_image(image: ImageInput, settings: PreprocessSettings | None = None) -> np.ndarray:
    """Decode and normalise one line image.

    Args:
        image: a file path, encoded image bytes, or a decoded array (H×W gray or H×W×3 RGB).
        settings: the preprocessing settings; defaults to `PreprocessSettings()`.

    Returns:
        uint8 array of shape (settings.height, W), dark ink on white, no padding.

    Raises:
        ImageDecodeError: the input cannot be decoded.

    Example:
        >>> img = np.full((100, 500), 255, np.uint8)
        >>> preprocess_image(img, PreprocessSettings(height=32)).shape
        (32, 160)
    """
    settings = settings or PreprocessSettings()
    return preprocess_gray(decode_gray(image), settings)[0]
