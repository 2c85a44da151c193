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
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from vhrdata.errors import ImageDecodeError

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

    def __post_init__(self):
        if not isinstance(self.height, int) or self.height < 8:
            raise ValueError(f"height must be an integer >= 8. Received: height={self.height!r}")
        if not isinstance(self.max_width, int) or self.max_width < self.height:
            raise ValueError(
                f"max_width must be an integer >= height ({self.height}). Received: max_width={self.max_width!r}"
            )
        if self.binarize not in BINARIZE_MODES:
            raise ValueError(f"binarize must be one of {', '.join(BINARIZE_MODES)}. Received: binarize={self.binarize!r}")
        for name in ("crop_margins", "normalize_contrast"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool. Received: {name}={getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
        a, b = self.to_dict(), other.to_dict()
        return [f"{k} {a[k]!r} != {b[k]!r}" for k in a if a[k] != b[k]]


def decode_gray(image: ImageInput) -> np.ndarray:
    """Decode a path, encoded bytes or an array to a 2-D uint8 grayscale array.

    Arrays with 3 or 4 channels are taken as RGB(A), as Pillow and Keras deliver them.
    """
    if isinstance(image, np.ndarray):
        return _array_to_gray(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        buf = np.frombuffer(image, dtype=np.uint8)
        gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None
        if gray is None:
            raise ImageDecodeError(f"cannot decode {buf.size} bytes as an image")
        return gray
    path = os.fspath(image)
    # IMREAD_GRAYSCALE converts inside the codec, skipping a full-colour intermediate.
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        if not Path(path).exists():
            raise ImageDecodeError(f"{path} does not exist")
        # cv2.imread cannot open some paths (odd encodings); decode from bytes before giving up.
        data = np.fromfile(path, dtype=np.uint8)
        gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
        if gray is None:
            raise ImageDecodeError(f"{path} cannot be decoded as an image")
    return gray


def _array_to_gray(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        scale = 255.0 if a.size and float(np.nanmax(a)) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a) * scale, 0, 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGBA2GRAY if a.shape[2] == 4 else cv2.COLOR_RGB2GRAY)
    if a.ndim != 2 or a.size == 0:
        raise ImageDecodeError(f"expected a 2-D image or H×W×(1|3|4) array. Received: shape={a.shape}")
    return a


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
