"""Finding TrueType fonts that can draw Vietnamese, and checking their coverage.

A font with a missing glyph draws a box ("tofu") or nothing at all, and the label would no longer
match the image. Every font is therefore checked against its cmap before it is used.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import string
import unicodedata
from pathlib import Path
from typing import Iterable

logger = logging.getLogger(__name__)


def _vietnamese_letters() -> str:
    bases = "aăâeêioôơuưy"
    tones = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]  # none, huyền, sắc, hỏi, ngã, nặng
    lower = [unicodedata.normalize("NFC", b + t) for b in bases for t in tones]
    lower = [c for c in lower if not c.isascii()] + ["đ"]
    return "".join(lower) + "".join(c.upper() for c in lower)


#: The 134 letters of Vietnamese that are not plain ASCII (66 vowels with marks and đ, both cases), NFC.
VIETNAMESE_LETTERS: str = _vietnamese_letters()

#: What every usable font must draw: Vietnamese letters, ASCII letters, digits and the punctuation
#: that addresses use.
REQUIRED_CHARS: str = VIETNAMESE_LETTERS + string.ascii_letters + string.digits + " ,./-'()#:+"

# Font families known to cover Vietnamese. Other files in the system folders are skipped without
# opening them (fonts-noto-core alone ships hundreds of script-specific files); files in folders the
# caller names explicitly are all considered.
_KNOWN_FAMILIES = re.compile(
    r"^(DejaVu(Sans|Serif)(Condensed)?|Noto(Sans|Serif)(Display)?|Andika\w*)(-[\w]+)?\.(ttf|otf)$",
    re.IGNORECASE,
)

SYSTEM_FONT_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
    Path.home() / ".fonts",
)


def matplotlib_font_dir() -> Path | None:
    """The folder of TrueType fonts bundled with matplotlib (DejaVu), or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=None)
def font_codepoints(path: str | os.PathLike) -> frozenset[int]:
    """The code points a font file maps to glyphs (its best cmap); empty if the file is unreadable."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        with TTFont(str(path), lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, AssertionError, KeyError) as ex:
        logger.debug("cannot read font %s: %s", path, ex)
        return frozenset()
    return frozenset(cmap)


def missing_chars(path: str | os.PathLike, text: str) -> str:
    """The characters of `text` (whitespace aside) that the font at `path` has no glyph for."""
    have = font_codepoints(str(path))
    seen = dict.fromkeys(c for c in text if not c.isspace() and ord(c) not in have)
    return "".join(seen)


def covers(path: str | os.PathLike, text: str) -> bool:
    """True when the font at `path` has a glyph for every non-space character of `text`."""
    return not missing_chars(path, text)


# Letters a font must draw as distinct, visible shapes. A "last resort" font (matplotlib ships
# LastResortHE) maps every code point to one placeholder box per Unicode block, so its cmap covers
# Vietnamese while it draws no letter at all.
_DISTINCT_LETTERS = "aboơđ"


@functools.lru_cache(maxsize=None)
def draws_letters(path: str | os.PathLike) -> bool:
    """True when the font at `path` draws a few letters as distinct, non-blank glyphs.

    Rejects placeholder fonts (LastResort, blank fonts) whose cmap covers every character.
    """
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(str(path), 40)
    except OSError:
        return False
    shapes = set()
    for ch in _DISTINCT_LETTERS:
        image = Image.new("L", (80, 80), 0)
        ImageDraw.Draw(image).text((10, 5), ch, font=font, fill=255)
        data = image.tobytes()
        if not any(data):
            return False
        shapes.add(data)
    return len(shapes) == len(_DISTINCT_LETTERS)


def _candidates(dirs: Iterable[Path], name_filter: bool) -> list[Path]:
    found = []
    for root in dirs:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in (".ttf", ".otf") or not path.is_file():
                continue
            if name_filter and not _KNOWN_FAMILIES.match(path.name):
                continue
            found.append(path)
    return found


def find_fonts(
    extra_dirs: Iterable[str | os.PathLike] = (),
    required: str = REQUIRED_CHARS,
    system: bool = True,
) -> list[Path]:
    """Font files that draw every character of `required`, sorted by file name.

    Looks in matplotlib's bundled fonts (DejaVu), in the system font folders (DejaVu, Noto and
    Andika families only) and in `extra_dirs` (every .ttf/.otf file there, e.g. handwriting fonts).
    When the same file name exists in several places the first found wins: extra folders, then the
    system, then matplotlib.

    Args:
        extra_dirs: more folders to search recursively.
        required: characters each font must cover.
        system: also search the system folders and matplotlib.

    Returns:
        Paths of the usable fonts; may be empty.
    """
    candidates = _candidates([Path(d) for d in extra_dirs], name_filter=False)
    if system:
        bundled = matplotlib_font_dir()
        dirs = list(SYSTEM_FONT_DIRS) + ([bundled] if bundled else [])
        candidates += _candidates(dirs, name_filter=True)
    by_name: dict[str, Path] = {}
    for path in candidates:
        by_name.setdefault(path.name, path)
    usable = []
    for name in sorted(by_name):
        missing = missing_chars(by_name[name], required)
        if missing:
            logger.debug("font %s skipped: no glyph for %r", by_name[name], missing[:20])
        elif not draws_letters(by_name[name]):
            logger.warning("font %s skipped: it draws placeholder boxes, not letters", by_name[name])
        else:
            usable.append(by_name[name])
    return usable
