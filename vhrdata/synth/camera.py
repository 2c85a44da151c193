"""A phone-camera capture of a text line, as one deterministic numpy + OpenCV function.

`camera_degrade(gray, rng, ranges)` takes a grayscale line (dark ink on light paper) and returns
what a phone photo of it looks like: the page as reflectance (ruled lines crossing the text, paper
texture) lit unevenly (a grey base level, a linear illumination gradient, a vignette, a soft cast
shadow), seen at a slight perspective, defocused or motion-blurred, with sensor noise and JPEG
compression. The output has the input's shape and is uint8.

One implementation, several parameter presets (`CameraRanges`):

- `SYNTH_CAMERA`: the "camera" capture of the synthetic generator (`vhrdata synth --capture`);
- `vhrmodel.augment.AugmentConfig` builds its own ranges from its fields (training augmentation);
- `TEST_CAMERA`: the test-camera evaluation set. Its ranges differ from both (stronger shadows and
  gradients, darker bases, lower JPEG qualities, other ruling), and it is meant to be used with
  its own seed (`TEST_CAMERA_SEED`), so that it measures robustness, not memory of the training
  transform.

Every random decision is drawn up front in a fixed order, so the result depends only on the image,
the generator's state and the ranges.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

Range = tuple[float, float]


@dataclass(frozen=True)
class CameraRanges:
    """Probabilities (`p_*`) and uniform ranges of the camera effects.

    Args:
        base: range of the overall illumination level (1 = as scanned, 0.6 = a dim, grey photo).
        p_gradient: probability of a linear illumination gradient; gradient: its end-to-end strength.
        p_vignette: probability of a vignette; vignette: darkening at the corners.
        p_shadow: probability of a soft cast shadow (a half-plane); shadow: its darkening.
        p_ruled: probability of ruled lines; ruled_spacing: line spacing as a fraction of the
            height; ruled_darkness: how much a ruling darkens the paper; ruled_tilt: its slope.
        p_margin: probability of a vertical margin line (when ruled).
        p_texture: probability of paper texture; texture: its relative amplitude.
        p_perspective: probability of a perspective warp; perspective: corner shift as a fraction
            of the height.
        p_defocus: probability of defocus (Gaussian) blur; defocus: its sigma in pixels.
        p_motion: probability of motion blur; motion: its length in pixels.
        p_noise: probability of sensor noise; noise: its standard deviation in grey levels.
        p_jpeg: probability of JPEG compression; jpeg_quality: its quality range.
    """

    base: Range = (0.62, 0.95)
    p_gradient: float = 0.8
    gradient: Range = (0.05, 0.35)
    p_vignette: float = 0.5
    vignette: Range = (0.05, 0.25)
    p_shadow: float = 0.3
    shadow: Range = (0.15, 0.45)
    p_ruled: float = 0.5
    ruled_spacing: Range = (0.55, 0.9)
    ruled_darkness: Range = (0.12, 0.35)
    ruled_tilt: Range = (-0.01, 0.01)
    p_margin: float = 0.15
    p_texture: float = 0.7
    texture: Range = (0.01, 0.05)
    p_perspective: float = 0.5
    perspective: Range = (0.0, 0.12)
    p_defocus: float = 0.45
    defocus: Range = (0.3, 1.0)
    p_motion: float = 0.2
    motion: Range = (2.0, 6.0)
    p_noise: float = 0.7
    noise: Range = (1.0, 5.0)
    p_jpeg: float = 0.85
    jpeg_quality: Range = (40.0, 90.0)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_"):
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"{f.name} must be in [0, 1]. Received: {f.name}={v}")
            elif not (isinstance(v, tuple) and len(v) == 2 and v[0] <= v[1]):
                raise ValueError(f"{f.name} must be (low, high) with low <= high. Received: {f.name}={v!r}")
        if not (0 < self.base[0] and self.base[1] <= 1.5 and 1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100):
            raise ValueError(f"base must be in (0, 1.5] and jpeg_quality in 1..100. Received: {self.base}, {self.jpeg_quality}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: The generator's camera capture (`vhrdata synth --capture camera|mix`).
SYNTH_CAMERA = CameraRanges()

#: The test-camera evaluation set: other ranges than training (and use it with TEST_CAMERA_SEED).
TEST_CAMERA = CameraRanges(
    base=(0.5, 0.85),
    p_gradient=0.9, gradient=(0.2, 0.45),
    p_vignette=0.7, vignette=(0.15, 0.35),
    p_shadow=0.5, shadow=(0.3, 0.55),
    p_ruled=0.6, ruled_spacing=(0.7, 1.1), ruled_darkness=(0.2, 0.45), ruled_tilt=(-0.02, 0.02),
    p_margin=0.25,
    p_texture=0.8, texture=(0.03, 0.07),
    p_perspective=0.7, perspective=(0.06, 0.16),
    p_defocus=0.6, defocus=(0.8, 1.6),
    p_motion=0.3, motion=(3.0, 7.0),
    p_noise=0.8, noise=(3.0, 8.0),
    p_jpeg=1.0, jpeg_quality=(30.0, 60.0),
)

#: The seed the test-camera set is built with (training augmentation never uses it).
TEST_CAMERA_SEED = 20250916


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1]))


def _smooth(rng: np.random.Generator, gh: int, gw: int, h: int, w: int) -> np.ndarray:
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def camera_degrade(gray: np.ndarray, rng: np.random.Generator, ranges: CameraRanges = SYNTH_CAMERA) -> np.ndarray:
    """Make a grayscale line look photographed with a phone; returns uint8 of the same shape.

    Args:
        gray: uint8 (H, W), dark ink on light paper.
        rng: the random generator; the output depends only on it, the image and `ranges`.
        ranges: the effect probabilities and strengths (`SYNTH_CAMERA`, `TEST_CAMERA`, ...).

    Raises:
        ValueError: when `gray` is not a 2-D uint8 image.

    Example:
        >>> img = np.full((32, 100), 240, np.uint8); img[10:20, 10:90] = 30
        >>> out = camera_degrade(img, np.random.default_rng(0))
        >>> out.shape, out.dtype
        ((32, 100), dtype('uint8'))
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"camera_degrade expects a uint8 (H, W) image. Received: dtype={gray.dtype}, shape={gray.shape}")
    h, w = gray.shape
    r = ranges
    # Every decision first, in a fixed order, so the stream never depends on the image content.
    on = rng.random(11)
    base = _u(rng, r.base)
    grad = _u(rng, r.gradient) if on[0] < r.p_gradient else 0.0
    grad_angle = float(rng.uniform(0, 2 * math.pi))
    vig = _u(rng, r.vignette) if on[1] < r.p_vignette else 0.0
    vig_cx, vig_cy = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.0, 1.0))
    shadow = _u(rng, r.shadow) if on[2] < r.p_shadow else 0.0
    sh_x, sh_angle, sh_soft = float(rng.uniform(0.1, 0.9)), float(rng.uniform(-1.2, 1.2)), float(rng.uniform(0.02, 0.15))
    ruled = on[3] < r.p_ruled
    spacing, rdark, tilt = _u(rng, r.ruled_spacing) * h, _u(rng, r.ruled_darkness), _u(rng, r.ruled_tilt)
    phase = float(rng.uniform(0.55, 0.85))  # a ruling near the baseline, so it crosses descenders
    margin = ruled and rng.random() < r.p_margin
    margin_x = float(rng.uniform(0.02, 0.3))
    texture = _u(rng, r.texture) if on[4] < r.p_texture else 0.0
    persp = _u(rng, r.perspective) * h if on[5] < r.p_perspective else 0.0
    corners = rng.uniform(-1, 1, size=(4, 2))
    defocus = _u(rng, r.defocus) if on[6] < r.p_defocus else 0.0
    motion = _u(rng, r.motion) if on[7] < r.p_motion else 0.0
    motion_angle = float(rng.uniform(0, 180))
    noise = _u(rng, r.noise) if on[8] < r.p_noise else 0.0
    quality = int(round(_u(rng, r.jpeg_quality))) if on[9] < r.p_jpeg else 0
    seed = int(rng.integers(2**31))
    sub = np.random.default_rng(seed)

    # Reflectance of the page: ink on paper, times the printed ruled lines.
    refl = gray.astype(np.float32) * np.float32(1 / 255)
    if ruled:
        ys = np.arange(h, dtype=np.float32)[:, None]
        xs = np.arange(w, dtype=np.float32)[None, :]
        y = (ys - phase * h - tilt * xs) / spacing
        dist = np.abs(y - np.round(y)) * spacing  # pixels to the nearest ruling
        width = max(0.8, 0.015 * h)
        line = np.exp(-(dist / width) ** 2)
        if margin:
            line = np.maximum(line, np.exp(-((xs - margin_x * w) / width) ** 2))
        refl = refl * (1 - rdark * line)
    if texture:
        refl *= 1 + texture * _smooth(sub, max(2, h // 6), max(2, w // 6), h, w)

    # Illumination: low frequency, so computed on a coarse grid and upsampled.
    step = 8
    gh, gw = max(2, math.ceil(h / step) + 1), max(2, math.ceil(w / step) + 1)
    gy = (np.arange(gh, dtype=np.float32)[:, None] * step) / max(h, 1)
    gx = (np.arange(gw, dtype=np.float32)[None, :] * step) / max(w, 1)
    aspect = w / max(h, 1)
    light = np.full((gh, gw), base, np.float32)
    if grad:
        ramp = math.cos(grad_angle) * gx + math.sin(grad_angle) * gy / aspect
        ramp = ramp - ramp.min()
        light *= 1 - grad * ramp / max(float(ramp.max()), 1e-6)
    if vig:
        d2 = ((gx - vig_cx) * 2) ** 2 + ((gy - vig_cy) * 2 / aspect) ** 2
        light *= 1 - vig * np.minimum(d2, 1.0)
    if shadow:
        # A half-plane edge through (sh_x, 0.5) at angle sh_angle, softened over sh_soft of the width.
        side = (gx - sh_x) * math.cos(sh_angle) + (gy - 0.5) / aspect * math.sin(sh_angle)
        light *= 1 - shadow / (1 + np.exp(-side / sh_soft))
    light = cv2.resize(light, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
    img = refl * light * np.float32(255)

    if persp:
        src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
        dst = (src + corners.astype(np.float32) * np.float32(persp)).astype(np.float32)
        m = cv2.getPerspectiveTransform(src, dst)
        img = cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if defocus:
        img = cv2.GaussianBlur(img, (0, 0), defocus, borderType=cv2.BORDER_REPLICATE)
    if motion:
        k = max(2, int(round(motion)))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), motion_angle, 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        kernel /= max(float(kernel.sum()), 1e-6)
        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    if noise:
        img += sub.standard_normal((h, w), dtype=np.float32) * np.float32(noise)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if quality:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:  # pragma: no branch - OpenCV does not fail on uint8
            out = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return out
