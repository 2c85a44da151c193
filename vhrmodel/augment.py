"""On-the-fly augmentation of text-line batches, in OpenCV + numpy.

Every transform works on one image cropped to its real width, so the white padding of a batch
is never touched: the batch is re-padded with `PAD_VALUE` afterwards. The height and the uint8
dtype are kept. Transforms that change the width (horizontal stretch, the room that shear needs)
return the new widths, and a stretch never narrows an image below what CTC needs for its label
(the model emits one frame per `downsample` pixels).

`BatchAugmenter` is the picklable per-batch callable handed to the store reader's `transform`
hook, so augmentation runs in the reader's worker processes, never in the training loop. The
training code hands it to training batches only: validation is never augmented.

Camera effects (illumination gradient and vignette, cast shadows, ruled lines, perspective, motion
blur, JPEG) are off by default (`AugmentConfig.with_camera()` turns them on); they are drawn by
`vhrdata.synth.camera.camera_degrade`, the one implementation the synthetic generator uses too,
with this config's ranges (training ranges; the test-camera set uses `TEST_CAMERA`).

A store built with `--flatten-background` holds flattened lines, but `predict` flattens a photo
*after* the camera did its damage. `AugmentConfig.flatten_background` (set by training from the
store's settings) therefore flattens every augmented line again as the last step, so the model
trains on what flattening makes of a shaded, ruled, compressed line, the input it will get.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from vhrdata.ctc import min_ctc_width
from vhrdata.preprocess import PAD_VALUE, flatten_background
from vhrdata.synth.camera import CameraRanges, camera_degrade

__all__ = ["PAD_VALUE", "AugmentConfig", "BatchAugmenter", "augment_batch", "augment_image", "min_ctc_width"]

#: The camera effects of AugmentConfig, in the order their decisions are drawn.
CAMERA_EFFECTS = ("illumination", "shadow", "ruled", "perspective", "motion_blur", "jpeg")


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the line augmentations.

    Each `p_*` is the probability that the transform is applied to one image; the ranges are
    sampled uniformly. Set a probability to 0 to switch a transform off.

    Args:
        p_elastic: probability of elastic distortion (a smooth random displacement field).
        elastic_alpha: standard deviation of the displacement, in pixels.
        elastic_grid: spacing of the random control points, in pixels (larger = smoother).
        p_affine: probability of the affine transform (shear, rotation, scale).
        max_shear: largest horizontal shear, as a slope (0.3 = 0.3 px of slant per pixel of height).
        max_rotation: largest rotation, in degrees.
        scale_range: range of the isotropic scale factor; values above 1 can clip ascenders.
        p_blur: probability of a Gaussian blur.
        blur_sigma: range of the blur sigma, in pixels.
        p_noise: probability of additive Gaussian noise.
        noise_std: range of the noise standard deviation, in grey levels.
        p_morph: probability of an erosion or a dilation (thicker or thinner strokes).
        morph_size: largest structuring element side (2 or 3 is plenty at 64 px height).
        p_contrast: probability of a brightness/contrast change.
        brightness: range of the brightness offset, in grey levels.
        contrast: range of the contrast factor (around the mid grey level).
        p_stretch: probability of a random horizontal stretch.
        stretch_range: range of the horizontal scale factor.
        p_illumination: probability of uneven camera lighting: a darker, greyer base level
            (`illumination_base`), a linear gradient (`illumination`) and a vignette.
        p_shadow: probability of a soft cast shadow; shadow: its darkening.
        p_ruled: probability of ruled lines crossing the text; ruled_darkness: how dark they are.
        p_perspective: probability of a slight perspective warp; perspective: corner shift as a
            fraction of the height (the shape is kept).
        p_motion_blur: probability of motion blur; motion_blur: its length in pixels.
        p_jpeg: probability of JPEG compression; jpeg_quality: its quality range.
        max_width: widest image allowed after augmentation (None = no limit).
        downsample: model width downsampling, used to keep stretched lines CTC-feasible.
        flatten_background: end every augmented line with `vhrdata.preprocess.flatten_background`,
            as `predict` does to its input (training sets it from the store's settings).
    """

    p_elastic: float = 0.3
    elastic_alpha: float = 1.5
    elastic_grid: int = 12
    p_affine: float = 0.5
    max_shear: float = 0.3
    max_rotation: float = 1.5
    scale_range: tuple[float, float] = (0.85, 1.03)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    p_noise: float = 0.3
    noise_std: tuple[float, float] = (2.0, 10.0)
    p_morph: float = 0.25
    morph_size: int = 2
    p_contrast: float = 0.5
    brightness: tuple[float, float] = (-25.0, 20.0)
    contrast: tuple[float, float] = (0.7, 1.15)
    p_stretch: float = 0.4
    stretch_range: tuple[float, float] = (0.8, 1.25)
    p_illumination: float = 0.0
    illumination_base: tuple[float, float] = (0.65, 1.0)
    illumination: tuple[float, float] = (0.05, 0.3)
    p_shadow: float = 0.0
    shadow: tuple[float, float] = (0.1, 0.4)
    p_ruled: float = 0.0
    ruled_darkness: tuple[float, float] = (0.1, 0.3)
    p_perspective: float = 0.0
    perspective: tuple[float, float] = (0.0, 0.1)
    p_motion_blur: float = 0.0
    motion_blur: tuple[float, float] = (2.0, 5.0)
    p_jpeg: float = 0.0
    jpeg_quality: tuple[float, float] = (40.0, 90.0)
    max_width: int | None = None
    downsample: int = 4
    flatten_background: bool = False

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.name.startswith("p_"):
                p = getattr(self, f.name)
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"{f.name} must be in [0, 1]. Received: {f.name}={p}")
        for name in ("scale_range", "blur_sigma", "noise_std", "brightness", "contrast", "stretch_range",
                     "illumination_base", "illumination", "shadow", "ruled_darkness", "perspective",
                     "motion_blur", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high. Received: {name}={(lo, hi)}")
        if self.scale_range[0] <= 0 or self.stretch_range[0] <= 0 or self.contrast[0] < 0:
            raise ValueError(
                "scale_range, stretch_range and contrast must be positive. "
                f"Received: {self.scale_range}, {self.stretch_range}, {self.contrast}"
            )
        if self.elastic_grid < 2 or self.morph_size < 1 or self.downsample < 1:
            raise ValueError(
                "elastic_grid >= 2, morph_size >= 1 and downsample >= 1 are required. Received: "
                f"elastic_grid={self.elastic_grid}, morph_size={self.morph_size}, downsample={self.downsample}"
            )

    @classmethod
    def with_camera(cls, p: float = 0.3, **overrides) -> "AugmentConfig":
        """The defaults plus every camera effect at probability `p` (then `overrides`)."""
        return cls(**{f"p_{name}": p for name in CAMERA_EFFECTS}, **overrides)

    @classmethod
    def off(cls) -> "AugmentConfig":
        """A config that applies nothing (every probability 0)."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.startswith("p_")})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AugmentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown augmentation settings {unknown}. Known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _camera_ranges(cfg: AugmentConfig, on: tuple[bool, ...]) -> CameraRanges:
    """This config's camera ranges with exactly the effects in `on` switched on (cached per config)."""
    return _camera_ranges_cached(cfg, on)


@functools.lru_cache(maxsize=256)
def _camera_ranges_cached(cfg: AugmentConfig, on: tuple[bool, ...]) -> CameraRanges:
    illum, shadow, ruled, persp, motion, jpeg = on
    return CameraRanges(
        base=cfg.illumination_base if illum else (1.0, 1.0),
        p_gradient=float(illum), gradient=cfg.illumination,
        p_vignette=float(illum) * 0.5,
        p_shadow=float(shadow), shadow=cfg.shadow,
        p_ruled=float(ruled), ruled_darkness=cfg.ruled_darkness, p_margin=0.1 * ruled,
        p_texture=0.5 * illum,
        p_perspective=float(persp), perspective=cfg.perspective,
        p_defocus=0.0,  # blur has its own p_blur
        p_motion=float(motion), motion=cfg.motion_blur,
        p_noise=0.0,  # noise has its own p_noise
        p_jpeg=float(jpeg), jpeg_quality=cfg.jpeg_quality,
    )


def _elastic(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    h, w = img.shape
    # A coarse random grid upsampled with cubic interpolation is a smooth field, at a fraction of
    # the cost of Gaussian-filtering a full-size noise image.
    gh = max(2, math.ceil(h / cfg.elastic_grid) + 1)
    gw = max(2, math.ceil(w / cfg.elastic_grid) + 1)
    dx = cv2.resize(rng.normal(0, cfg.elastic_alpha, (gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(rng.normal(0, cfg.elastic_alpha, (gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    dx += np.arange(w, dtype=np.float32)[None, :]
    dy += np.arange(h, dtype=np.float32)[:, None]
    return cv2.remap(img, dx, dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_VALUE)


def _affine(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    h, w = img.shape
    shear = rng.uniform(-cfg.max_shear, cfg.max_shear)
    # On a long line even a small angle lifts the ends out of the canvas; cap the angle so that
    # the ends move at most an eighth of the height.
    max_angle = min(math.radians(cfg.max_rotation), math.atan2(h / 8.0, w / 2.0))
    angle = rng.uniform(-max_angle, max_angle)
    scale = rng.uniform(*cfg.scale_range)
    # Shear and rotation push the line ends sideways; widen the canvas by that much so that no
    # character is clipped (the caller updates the width).
    extra = math.ceil(abs(shear) * h + abs(math.sin(angle)) * h)
    new_w = w + extra
    cx, cy = w / 2.0, h / 2.0
    ca, sa = math.cos(angle) * scale, math.sin(angle) * scale
    # x' = ca*(x-cx) - sa*(y-cy) + shear*(y-cy) + new_w/2 ; y' = sa*(x-cx) + ca*(y-cy) + cy
    m = np.array(
        [
            [ca, -sa + shear, new_w / 2.0 - ca * cx - (-sa + shear) * cy],
            [sa, ca, cy - sa * cx - ca * cy],
        ],
        dtype=np.float32,
    )
    return cv2.warpAffine(img, m, (new_w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_VALUE)


def _blur(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(*cfg.blur_sigma), borderType=cv2.BORDER_REPLICATE)


def _noise(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= np.float32(rng.uniform(*cfg.noise_std))
    noise += img
    return np.clip(noise, 0, 255, out=noise).astype(np.uint8)


def _morph(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    k = int(rng.integers(2, cfg.morph_size + 1)) if cfg.morph_size >= 2 else 1
    kernel = np.ones((k, k), np.uint8)
    # Ink is dark: erosion (a min filter) thickens strokes, dilation thins them.
    op = cv2.erode if rng.random() < 0.5 else cv2.dilate
    return op(img, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=PAD_VALUE)


def _contrast(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    c = rng.uniform(*cfg.contrast)
    b = rng.uniform(*cfg.brightness)
    out = (img.astype(np.float32) - 128.0) * c + 128.0 + b
    return np.clip(out, 0, 255).astype(np.uint8)


def _stretch(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, min_width: int, max_width: int | None) -> np.ndarray:
    h, w = img.shape
    new_w = int(round(w * rng.uniform(*cfg.stretch_range)))
    new_w = max(new_w, min_width, 1)
    if max_width is not None:
        new_w = min(new_w, max(max_width, min_width))
    if new_w == w:
        return img
    interp = cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, h), interpolation=interp)


def augment_image(
    img: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
    min_width: int = 0,
) -> np.ndarray:
    """Augment one uint8 line image (H, W) cropped to its real width; returns uint8 (H, W').

    Args:
        img: dark ink on white, uint8, no batch padding.
        rng: the random generator (determinism comes from its seed).
        config: what to apply.
        min_width: the result is never narrower than this (see `min_ctc_width`).
    """
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"augment_image expects a uint8 (H, W) image. Received: dtype={img.dtype}, shape={img.shape}")
    cfg = config
    out = img
    # Draw every decision up front so that the random stream does not depend on image content.
    flags = rng.random(7 + len(CAMERA_EFFECTS))
    if flags[0] < cfg.p_stretch:
        out = _stretch(out, rng, cfg, min_width, cfg.max_width)
    if flags[1] < cfg.p_affine:
        out = _affine(out, rng, cfg)
    if flags[2] < cfg.p_elastic:
        out = _elastic(out, rng, cfg)
    if flags[3] < cfg.p_morph:
        out = _morph(out, rng, cfg)
    if flags[4] < cfg.p_blur:
        out = _blur(out, rng, cfg)
    if flags[5] < cfg.p_contrast:
        out = _contrast(out, rng, cfg)
    camera = tuple(bool(flags[7 + k] < getattr(cfg, f"p_{name}")) for k, name in enumerate(CAMERA_EFFECTS))
    if any(camera):
        out = camera_degrade(out, rng, _camera_ranges(cfg, camera))
    if flags[6] < cfg.p_noise:
        out = _noise(out, rng, cfg)
    if cfg.flatten_background:
        out = flatten_background(out)
    if cfg.max_width is not None and out.shape[1] > cfg.max_width and out.shape[1] > min_width:
        # The affine canvas may have grown past the limit: squeeze back rather than clip ink.
        out = cv2.resize(out, (max(cfg.max_width, min_width), out.shape[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.uint8)


def augment_batch(
    images: np.ndarray,
    widths: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment a padded batch; returns (images uint8 [B, H, W'], widths int32 [B]).

    Each image is cropped to its width, augmented and re-padded with white to the widest result,
    so padding stays exactly `PAD_VALUE`. With `labels` (int [B, L], 0-padded), no image is
    narrowed below `min_ctc_width` of its label.

    Args:
        images: uint8 [B, H, W] padded with `PAD_VALUE`.
        widths: real width of each image.
        rng: the random generator.
        config: what to apply.
        labels: optional 1-based label ids, 0-padded.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"augment_batch expects uint8 [B, H, W]. Received: dtype={images.dtype}, shape={images.shape}")
    widths = np.asarray(widths)
    out = []
    for i in range(images.shape[0]):
        w = int(widths[i])
        min_w = min_ctc_width(labels[i], config.downsample) if labels is not None else 0
        out.append(augment_image(images[i, :, :w], rng, config, min_width=min_w))
    new_widths = np.array([o.shape[1] for o in out], dtype=np.int32)
    batch = np.full((images.shape[0], images.shape[1], int(new_widths.max(initial=1))), PAD_VALUE, dtype=np.uint8)
    for i, o in enumerate(out):
        batch[i, :, : o.shape[1]] = o
    return batch, new_widths


class BatchAugmenter:
    """Picklable per-batch augmentation: `transform(batch, rng) -> batch` for the store reader.

    The store reader calls it in its worker processes with a generator seeded by (seed, epoch,
    shard, batch number), so results are deterministic per seed whatever the number of workers.
    Called without `rng`, it derives one from its own `seed`, the epoch (`set_epoch`) and the ids
    of the batch's lines.

    Args:
        config: the augmentation settings.
        seed: base seed, used only when the caller passes no `rng`.

    Example:
        >>> aug = BatchAugmenter(AugmentConfig(), seed=0)
        >>> # store.split("train").batches(32, transform=aug, workers=2)
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0):
        self.config = config or AugmentConfig()
        self.seed = int(seed)
        self.epoch = 0

    def __repr__(self) -> str:
        return f"BatchAugmenter({self.config!r}, seed={self.seed})"

    def set_epoch(self, epoch: int) -> None:
        """Start a new epoch (changes every batch's own random stream)."""
        self.epoch = int(epoch)

    def rng_for(self, ids: Sequence[str] | None = None) -> np.random.Generator:
        """The generator used when the caller passes none: from seed, epoch and the batch's ids."""
        key = zlib.crc32("\x1f".join(map(str, ids or ())).encode("utf-8"))
        return np.random.default_rng([self.seed, self.epoch, key])

    def __call__(self, batch: Any, rng: np.random.Generator | None = None):
        """Augment a batch-like object (`images`, `widths`, optional `labels`, `ids`).

        Returns a copy with new images and widths; the input batch is left as it was.
        """
        if rng is None:
            rng = self.rng_for(getattr(batch, "ids", None))
        labels = getattr(batch, "labels", None)
        images, widths = augment_batch(batch.images, batch.widths, rng, self.config, labels=labels)
        if dataclasses.is_dataclass(batch):
            return dataclasses.replace(batch, images=images, widths=widths)
        if hasattr(batch, "_replace"):
            return batch._replace(images=images, widths=widths)
        raise TypeError(f"cannot rebuild a batch of type {type(batch).__name__}; pass a dataclass or NamedTuple")

    def augment_arrays(self, images: np.ndarray, widths: np.ndarray, rng: np.random.Generator | None = None):
        """Augment plain arrays; returns (images, widths)."""
        return augment_batch(images, widths, rng if rng is not None else self.rng_for(), self.config)
