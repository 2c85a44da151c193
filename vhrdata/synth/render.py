"""Synthetic writers and the rendering of one text line as a grayscale "handwritten" image.

A writer is a font plus a handful of habits: letter size, slant, stroke width, spacing, how much
the baseline wanders, ink and paper. A line is drawn glyph by glyph (so that baseline, size and
spacing can jitter per character), then slanted, stretched and elastically warped in one
`cv2.remap`, blurred, and laid on textured, noisy paper.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vhrdata.errors import SynthError
from vhrdata.synth.camera import SYNTH_CAMERA, CameraRanges, camera_degrade
from vhrdata.synth.fonts import covers, find_fonts
from vhrdata.synth.seeding import WRITER_STREAM, check_seed, line_rng

#: Default image height in pixels (the real Cinnamon lines are 96-104 px high).
DEFAULT_HEIGHT = 96

#: How a line is captured: "scanner" (white paper, as in the Cinnamon scans) or "camera" (a phone
#: photo: see `vhrdata.synth.camera`); "mix" chooses one per line.
CAPTURES = ("scanner", "camera", "mix")

#: Probability that a line gets a corrective stroke through one word (the label is unchanged).
STRIKE_P = 0.03


@dataclass(frozen=True)
class WriterStyle:
    """How one synthetic writer writes.

    Args:
        name: writer id, e.g. "w003".
        font: path of a TrueType font that covers Vietnamese.
        height: image height in pixels.
        size: font size in pixels.
        baseline: baseline position as a fraction of the height.
        slant: horizontal shear (pixels per pixel above the baseline); positive leans right.
        stretch: horizontal scale factor (handwriting is wider than type).
        stroke: pen width change in pixels: -1 thinner, 0 as the font, 1 or 2 thicker.
        tracking: extra space between characters, as a fraction of the font size.
        spacing_jitter: relative random change of each character advance.
        word_gap: width of a space relative to the font's space.
        baseline_jitter: standard deviation of each character's vertical offset, in pixels.
        baseline_drift: amplitude of the slow wave of the baseline along the line, in pixels.
        size_jitter: relative random change of each character's size.
        slant_jitter: how much the slant changes from letter to letter (standard deviation).
        ink: gray level of the ink (0 = black).
        pressure: how much the ink fades along the line (0 = even).
        elastic: amplitude of the fine elastic warping, in pixels.
        blur: Gaussian blur sigma in pixels (0 = none).
        noise: standard deviation of the pixel noise.
        paper: gray level of the paper.
        texture: amplitude of the paper's low-frequency texture.
    """

    name: str
    font: str
    height: int = DEFAULT_HEIGHT
    size: int = 44
    baseline: float = 0.69
    slant: float = 0.15
    stretch: float = 1.1
    stroke: int = 0
    tracking: float = 0.02
    spacing_jitter: float = 0.04
    word_gap: float = 1.2
    baseline_jitter: float = 1.0
    baseline_drift: float = 2.0
    size_jitter: float = 0.04
    slant_jitter: float = 0.05
    ink: int = 50
    pressure: float = 0.2
    elastic: float = 1.2
    blur: float = 0.6
    noise: float = 4.0
    paper: int = 228
    texture: float = 6.0

    def to_dict(self) -> dict:
        """The style as a JSON-ready dict (the font as its file name and full path)."""
        d = dataclasses.asdict(self)
        d["font_name"] = Path(self.font).name
        return d


def make_writers(
    n: int,
    seed: int = 0,
    fonts: Sequence[str | Path] | None = None,
    height: int = DEFAULT_HEIGHT,
) -> list[WriterStyle]:
    """`n` distinct synthetic writers. Writer i depends only on (seed, i) and the font list.

    Fonts are dealt out in a seeded order so that the first writers all get different fonts.

    Args:
        n: how many writers.
        seed: a non-negative integer.
        fonts: font files to use; by default every usable font found by `find_fonts()`.
        height: nominal image height in pixels; each writer varies it by a few percent.

    Returns:
        Writers named w000, w001, ...

    Raises:
        SynthError: when no usable font is available.

    Example:
        >>> writers = make_writers(2, seed=0)
        >>> [w.name for w in writers]
        ['w000', 'w001']
    """
    check_seed(seed)
    if n < 1:
        raise ValueError(f"n must be >= 1. Received: n={n}")
    if height < 16:
        raise ValueError(f"height must be >= 16 pixels. Received: height={height}")
    font_list = [str(f) for f in (find_fonts() if fonts is None else fonts)]
    if not font_list:
        raise SynthError(
            "No font that covers Vietnamese was found. Install matplotlib or the Debian package "
            "fonts-dejavu-core, or pass a folder of .ttf files."
        )
    order = line_rng(seed, WRITER_STREAM).permutation(len(font_list))
    return [_make_writer(i, font_list[order[i % len(font_list)]], line_rng(seed, WRITER_STREAM, i), height)
            for i in range(n)]


def _make_writer(index: int, font: str, rng: np.random.Generator, height: int) -> WriterStyle:
    name = Path(font).stem.lower()
    bold, light = "bold" in name, "light" in name
    italic = "oblique" in name or "italic" in name
    h = int(round(height * rng.uniform(0.94, 1.06)))
    ink = int(rng.uniform(10, 95))
    paper = int(rng.uniform(max(212, ink + 110), 248))
    # Real pen strokes are thin and even: bold faces get thinned, light ones thickened.
    strokes, weights = [-1, 0, 1, 2], [0.2, 0.5, 0.25, 0.05]
    if bold:
        weights = [0.6, 0.4, 0.0, 0.0]
    if light:
        weights = [0.0, 0.2, 0.6, 0.2]
    slant = float(np.clip(rng.normal(0.16, 0.12), -0.12, 0.45))
    if italic:  # the font already leans
        slant = float(np.clip(slant - 0.12, -0.15, 0.3))
    return WriterStyle(
        name=f"w{index:03d}",
        font=font,
        height=h,
        size=int(round(h * rng.uniform(0.40, 0.50) * _size_scale(font))),
        baseline=float(rng.uniform(0.64, 0.72)),
        slant=slant,
        stretch=float(rng.uniform(1.05, 1.4)),
        stroke=int(rng.choice(strokes, p=weights)),
        tracking=float(rng.uniform(-0.03, 0.07)),
        spacing_jitter=float(rng.uniform(0.0, 0.08)),
        word_gap=float(rng.uniform(0.9, 1.8)),
        baseline_jitter=float(rng.uniform(0.0, 0.012) * h),
        baseline_drift=float(rng.uniform(0.0, 0.05) * h),
        size_jitter=float(rng.uniform(0.0, 0.07)),
        slant_jitter=float(rng.uniform(0.0, 0.09)),
        ink=ink,
        pressure=float(rng.uniform(0.0, 0.35)),
        elastic=float(rng.uniform(0.5, 1.6) * h / DEFAULT_HEIGHT),
        blur=float(rng.choice([0.0, rng.uniform(0.3, 1.1)], p=[0.3, 0.7])),
        noise=float(rng.uniform(1.0, 8.0)),
        paper=paper,
        texture=float(rng.uniform(0.0, 3.0)),
    )


@functools.lru_cache(maxsize=256)
def _size_scale(path: str) -> float:
    """Font-size factor that gives a face about DejaVu Sans' x-height without overflowing the line.

    Handwriting faces differ a lot at the same nominal size (Square Peg and the scripts have tiny
    x-heights, Playwrite VN and Fuzzy Bubbles large ones); normalising the x-height (capped so that
    "Hg" spans at most 1.3 times DejaVu's) keeps every writer's letters about as tall as real ones.
    """
    try:
        font = _font(path, 100)
        x_top, x_bottom = font.getbbox("x", anchor="ls")[1::2]
        top, bottom = font.getbbox("Hg", anchor="ls")[1::2]
    except OSError:  # pragma: no cover - fonts are checked before use
        return 1.0
    xh, extent = x_bottom - x_top, bottom - top
    if xh <= 0 or extent <= 0:
        return 1.0
    return float(np.clip(min(56.0 / xh, 1.3 * 94.0 / extent), 0.6, 2.2))


@functools.lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=16384)
def _glyph(path: str, size: int, ch: str) -> tuple[np.ndarray | None, int, int, float]:
    """A glyph's coverage mask, its offset from the pen position on the baseline, and its advance."""
    font = _font(path, size)
    advance = font.getlength(ch)
    left, top, right, bottom = font.getbbox(ch, anchor="ls")
    if right <= left or bottom <= top:
        return None, 0, 0, advance
    img = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(img).text((-left, -top), ch, font=font, fill=255, anchor="ls")
    return np.asarray(img), left, top, advance


@functools.lru_cache(maxsize=1)
def _fallback_fonts() -> tuple[str, ...]:
    return tuple(str(f) for f in find_fonts())


@functools.lru_cache(maxsize=4096)
def _font_for(primary: str, ch: str) -> str:
    if covers(primary, ch):
        return primary
    for path in _fallback_fonts():
        if covers(path, ch):
            return path
    raise SynthError(f"No available font can draw {ch!r} (U+{ord(ch):04X}).")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean noise of unit scale that varies over about `cell` pixels (a bicubic-upsampled grid)."""
    h, w = shape
    gh, gw = max(2, math.ceil(h / cell) + 1), max(2, math.ceil(w / cell) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _layout(text: str, writer: WriterStyle, rng: np.random.Generator,
            pad: int) -> tuple[np.ndarray, float, list[tuple[float, float]]]:
    """Draw the glyphs of `text` on a coverage canvas (uint8, 255 = ink).

    Returns the canvas, the baseline y, and the canvas x-span of each word of 3+ characters.
    """
    h = writer.height
    n = len(text)
    # Three sizes per writer, not a continuum: every (font, size, char) glyph is rasterised once per process.
    levels = np.maximum(6, np.rint(writer.size * (1 + writer.size_jitter * np.array([-1.5, 0.0, 1.5])))).astype(int)
    sizes = levels[rng.choice(3, size=n, p=[0.25, 0.5, 0.25])]
    advance_jitter = 1 + writer.spacing_jitter * rng.standard_normal(n)
    lift = writer.baseline_jitter * rng.standard_normal(n)
    glyphs = []
    x = 0.0
    xs = np.empty(n)
    for i, ch in enumerate(text):
        path = _font_for(writer.font, ch) if not ch.isspace() else writer.font
        mask, left, top, advance = _glyph(path, int(sizes[i]), ch)
        if ch.isspace():
            advance *= writer.word_gap
        glyphs.append((mask, left, top))
        xs[i] = x
        x += max(0.0, advance * advance_jitter[i] + writer.tracking * writer.size)
    width = int(math.ceil(x)) + 2 * pad
    baseline = writer.baseline * h
    period = rng.uniform(6, 20) * writer.size
    drift = writer.baseline_drift * np.sin(2 * np.pi * xs / period + rng.uniform(0, 2 * np.pi))
    canvas = np.zeros((h, width), np.uint8)
    for i, (mask, left, top) in enumerate(glyphs):
        if mask is None:
            continue
        x0 = pad + int(round(xs[i])) + left
        y0 = int(round(baseline + drift[i] + lift[i])) + top
        gh, gw = mask.shape
        ya, yb = max(0, y0), min(h, y0 + gh)
        if yb <= ya:
            continue
        region = canvas[ya:yb, x0:x0 + gw]
        np.maximum(region, mask[ya - y0:yb - y0, :region.shape[1]], out=region)
    spans, start = [], None
    for i, ch in enumerate(text + " "):
        if not ch.isspace() and start is None:
            start = i
        elif ch.isspace() and start is not None:
            if i - start >= 3:
                end = xs[i] if i < n else x
                spans.append((pad + xs[start], pad + end))
            start = None
    return canvas, baseline, spans


def render_line(
    text: str,
    writer: WriterStyle,
    rng: np.random.Generator,
    capture: str = "scanner",
    camera: CameraRanges = SYNTH_CAMERA,
    strike_p: float = STRIKE_P,
) -> np.ndarray:
    """Render `text` as a grayscale line image written by `writer`.

    Args:
        text: the line; it is NFC-normalised first. Must not be blank.
        writer: the writer's style (see `make_writers`).
        rng: random generator for this line; the image depends only on its state, the text, the
            writer and the capture settings.
        capture: "scanner" (light, even paper) or "camera" (`camera_degrade` with `camera`).
        camera: the camera effect ranges used when capture is "camera".
        strike_p: probability of a stroke through one word (drawn as ink; the label is unchanged).

    Returns:
        uint8 array (writer.height, width): dark ink on light paper.

    Raises:
        ValueError: when the text is blank.
        SynthError: when no available font can draw one of its characters.

    Example:
        >>> w = make_writers(1, seed=0)[0]
        >>> render_line("Số 12 Trần Phú, Hà Nội", w, np.random.default_rng(0)).dtype
        dtype('uint8')
    """
    text = unicodedata.normalize("NFC", text)
    if not text.strip():
        raise ValueError(f"text must contain something to draw. Received: text={text!r}")
    if capture not in ("scanner", "camera"):
        raise ValueError(f"capture must be 'scanner' or 'camera'. Received: capture={capture!r}")
    h = writer.height
    pad = int(abs(writer.slant) * h + 4 * writer.elastic + writer.size)
    canvas, baseline, word_spans = _layout(text, writer, rng, pad)
    # Always two draws, so that a line with and without its strike-through differ only by the stroke.
    strike_roll, strike_seed = rng.random(), int(rng.integers(2**31))
    if word_spans and strike_roll < strike_p:
        sub = np.random.default_rng(strike_seed)
        _strike(canvas, word_spans[int(sub.integers(len(word_spans)))], baseline, writer, sub)

    if writer.stroke > 0:
        k = writer.stroke + 1
        canvas = cv2.dilate(canvas, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    elif writer.stroke < 0:
        canvas = cv2.erode(canvas, np.ones((2, 1), np.uint8))

    stretch = writer.stretch * rng.uniform(0.97, 1.03)
    slant = writer.slant + rng.normal(0, 0.03)
    out_w = int(canvas.shape[1] * stretch)
    map_x, map_y = _warp_maps(rng, writer, h, out_w, baseline, slant, stretch)
    ink = cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    # Crop to the ink with a random margin, as a form field would be cut out.
    cols = np.flatnonzero(ink.max(axis=0) > 32)
    if cols.size:
        margin_l, margin_r = rng.integers(int(0.05 * h), int(0.35 * h) + 1, size=2)
        ink = ink[:, max(0, cols[0] - margin_l):cols[-1] + 1 + margin_r]
    w = ink.shape[1]

    mask = ink.astype(np.float32) * np.float32(1.0 / 255.0)
    if writer.blur > 0.25:
        mask = cv2.GaussianBlur(mask, (0, 0), writer.blur)
    if writer.pressure > 0:
        fade = 1.0 - writer.pressure * np.abs(_smooth_noise(rng, (1, w), cell=3 * writer.size))
        mask *= np.clip(fade, 0.3, 1.0)

    # Paper: texture and uneven lighting vary slowly, so they are drawn small and upsampled.
    step = 8
    low = np.float32(writer.paper) + writer.texture * _smooth_noise(rng, (h // step + 2, w // step + 2), cell=6)
    low += np.linspace(0, rng.uniform(-6, 6), low.shape[1], dtype=np.float32)[None, :]
    paper = cv2.resize(low, (low.shape[1] * step, low.shape[0] * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
    image = paper - (paper - np.float32(writer.ink)) * mask
    image += np.float32(writer.noise) * _noise_patch(rng, h, w)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if capture == "camera":
        image = camera_degrade(image, rng, camera)
    return image


def _strike(canvas: np.ndarray, span: tuple[float, float], baseline: float, writer: WriterStyle,
            rng: np.random.Generator) -> None:
    """Draw a pen stroke through a word (x0, x1) at about the x-height middle, slightly tilted."""
    x0, x1 = span
    y = baseline - writer.size * rng.uniform(0.2, 0.4)
    tilt = rng.uniform(-0.08, 0.08) * (x1 - x0)
    thick = max(1, int(round(writer.size * rng.uniform(0.05, 0.09))))
    pts = np.array([[x0 - 2, y - tilt / 2], [(x0 + x1) / 2, y + rng.normal(0, 1)], [x1 + 2, y + tilt / 2]])
    cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 255, thick, cv2.LINE_AA)


def _warp_maps(
    rng: np.random.Generator,
    writer: WriterStyle,
    h: int,
    w: int,
    baseline: float,
    slant: float,
    stretch: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse maps (output pixel -> canvas pixel) for slant, stretch and elastic warping.

    The fields are smooth, so they are computed on a grid 4 times coarser and upsampled: this is
    exact for the slant and stretch (linear) and saves most of the per-line arithmetic.
    """
    step = 4
    gh, gw = math.ceil(h / step) + 1, math.ceil(w / step) + 1
    # cv2.resize aligns pixel centres: coarse sample k sits at fine position k * step + (step - 1) / 2.
    ys = (np.arange(gh, dtype=np.float32) * step + (step - 1) / 2)[:, None]
    xs = (np.arange(gw, dtype=np.float32) * step + (step - 1) / 2)[None, :]
    size = writer.size / step
    amp = writer.elastic
    # Stroke-scale wobble stays small: larger values break diacritics, which carry the label.
    dx = amp * (0.4 * _smooth_noise(rng, (gh, gw), 0.3 * size) + 1.2 * _smooth_noise(rng, (gh, gw), 1.0 * size))
    dy = amp * (0.3 * _smooth_noise(rng, (gh, gw), 0.3 * size) + 0.9 * _smooth_noise(rng, (gh, gw), 1.0 * size))
    dy += amp * 1.5 * _smooth_noise(rng, (1, gw), 4.0 * size)
    # Output x = canvas x * stretch + slant * (baseline - y): letters lean right above the baseline.
    # The slant wanders from letter to letter, as in handwriting.
    slant = slant + writer.slant_jitter * _smooth_noise(rng, (1, gw), 0.5 * size)
    map_x = (xs - slant * (baseline - ys)) / stretch + dx
    map_y = ys + dy
    size_out = (gw * step, gh * step)
    map_x = cv2.resize(map_x, size_out, interpolation=cv2.INTER_LINEAR)[:h, :w]
    map_y = cv2.resize(map_y, size_out, interpolation=cv2.INTER_LINEAR)[:h, :w]
    return map_x, map_y


_NOISE_TILE_SHAPE = (256, 4096)


@functools.lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    # Fixed seed: the tile is the same in every process, so outputs do not depend on the worker.
    return np.random.default_rng(20180916).standard_normal(_NOISE_TILE_SHAPE, dtype=np.float32)


def _noise_patch(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Unit Gaussian pixel noise of shape (h, w), cut from a shared tile at a random place."""
    tile = _noise_tile()
    th, tw = tile.shape
    if h > th or w > tw:
        return rng.standard_normal((h, w), dtype=np.float32)
    y, x = rng.integers(0, th - h + 1), rng.integers(0, tw - w + 1)
    patch = tile[y:y + h, x:x + w]
    return patch[:, ::-1] if rng.random() < 0.5 else patch
