"""Handwriting typefaces from Fontsource (OFL, on the npm registry), merged into one TTF per face.

`make fonts` runs `scripts/fetch_fonts.py`, which calls `fetch_faces()`: for every face of
`HANDWRITING_FACES` at its pinned version it runs `npm pack @fontsource/NAME@VERSION` into a cache
folder, unpacks the tarball, merges the face's weight-400 normal subsets (`latin`, `latin-ext`,
`vietnamese` .woff files under `files/`) with `fontTools.merge.Merger` into `ttf/NAME.ttf`, and
keeps it only when its cmap covers `REQUIRED_CHARS` (every character the generator can emit,
Vietnamese letters included). Nothing here needs the network once the cache is filled, and the
generator never calls npm: it only reads `<cache>/ttf/*.ttf`.

Faces in `HELD_OUT_FACES` are never used for training lines (`fonts="train"`): they make the
test-unseen-font set (`fonts="held-out"`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from vhrdata.errors import SynthError
from vhrdata.synth.fonts import REQUIRED_CHARS, missing_chars

logger = logging.getLogger(__name__)

#: Fontsource packages (handwriting and script faces with a Vietnamese subset), pinned.
HANDWRITING_FACES: dict[str, str] = {
    "patrick-hand": "5.3.0",
    "dancing-script": "5.3.0",
    "itim": "5.3.0",
    "charm": "5.2.7",
    "mali": "5.3.0",
    "pangolin": "5.3.0",
    "sriracha": "5.3.0",
    "playpen-sans": "5.3.0",
    "allura": "5.3.0",
    "great-vibes": "5.3.0",
    "ms-madi": "5.3.0",
    "licorice": "5.3.0",
    "playwrite-vn": "5.3.0",
    "grape-nuts": "5.3.0",
    "mynerve": "5.3.0",
    "fuzzy-bubbles": "5.3.0",
    "sedgwick-ave": "5.3.0",
    "oooh-baby": "5.3.0",
    "square-peg": "5.3.0",
    "send-flowers": "5.3.0",
    "ephesis": "5.3.0",
    "comforter": "5.2.8",
    "vujahday-script": "5.3.0",
    "charmonman": "5.2.7",
    "kodchasan": "5.2.8",
    "grandstander": "5.3.0",
}

#: Faces kept out of training, for the test-unseen-font set: one print hand, one connected script
#: and one casual hand, so the set is not one style.
HELD_OUT_FACES: tuple[str, ...] = ("pangolin", "great-vibes", "mynerve")

FONT_SELECTIONS = ("train", "held-out", "all", "system")

#: Where `make fonts` puts its cache unless FONTS_CACHE / VHR_FONTS_DIR say otherwise.
DEFAULT_CACHE = Path.home() / ".cache" / "vhr" / "fonts"

SUBSETS = ("latin", "latin-ext", "vietnamese")


def fonts_cache() -> Path:
    """The font cache folder: $VHR_FONTS_DIR, or ~/.cache/vhr/fonts."""
    env = os.environ.get("VHR_FONTS_DIR")
    return Path(env).expanduser() if env else DEFAULT_CACHE


def face_name(path: str | os.PathLike) -> str:
    """The Fontsource face a merged file is ("…/ttf/great-vibes.ttf" -> "great-vibes")."""
    return Path(path).stem


def handwriting_fonts(selection: str = "train", cache: str | os.PathLike | None = None) -> list[Path]:
    """Merged handwriting TTFs in the cache that passed the coverage check, for `selection`.

    Args:
        selection: "train" (all but `HELD_OUT_FACES`), "held-out" (only those), "all", or
            "system" (none: the system fonts only).
        cache: the cache folder (default `fonts_cache()`).

    Returns:
        Paths sorted by face name; empty when `make fonts` has not been run (or for "system").
    """
    if selection not in FONT_SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(FONT_SELECTIONS)}. Received: {selection!r}")
    if selection == "system":
        return []
    root = Path(cache) if cache is not None else fonts_cache()
    found = []
    for path in sorted((root / "ttf").glob("*.ttf")):
        held = face_name(path) in HELD_OUT_FACES
        if selection == "all" or (selection == "held-out") == held:
            if not missing_chars(path, REQUIRED_CHARS):
                found.append(path)
    return found


def subset_files(package_dir: Path, name: str, weight: int = 400, style: str = "normal") -> list[Path]:
    """The face's per-subset .woff files (latin first), as Fontsource lays them out under files/."""
    files = []
    for subset in SUBSETS:
        for ext in ("woff", "woff2"):
            path = package_dir / "files" / f"{name}-{subset}-{weight}-{style}.{ext}"
            if path.is_file():
                files.append(path)
                break
    return files


def merge_face(files: Iterable[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Merge the subset files of one face (same design, disjoint cmaps) into one TTF at `out`.

    .woff2 inputs need the `brotli` package; .woff (zlib) do not.
    """
    from fontTools.merge import Merger
    from fontTools.ttLib import TTFont

    files = [Path(f) for f in files]
    if not files:
        raise SynthError("merge_face needs at least one font file")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        plain = []
        for i, f in enumerate(files):
            font = TTFont(str(f))
            font.flavor = None  # woff -> sfnt; Merger reads plain TrueType files
            p = Path(tmp) / f"{i}.ttf"
            font.save(str(p))
            plain.append(str(p))
        merged = Merger().merge(plain) if len(plain) > 1 else TTFont(plain[0])
        merged.save(str(out))
    return out


@dataclass
class FaceResult:
    """What happened to one face: its version, merged file, and whether it passed coverage."""

    name: str
    version: str
    path: str | None = None
    covered: bool = False
    held_out: bool = False
    missing: str = ""
    error: str = ""


def npm_available() -> bool:
    """True when an `npm` executable is on PATH."""
    return shutil.which("npm") is not None


def _npm_pack(name: str, version: str, dest: Path, timeout: float) -> Path:
    spec = f"@fontsource/{name}@{version}"
    done = subprocess.run(["npm", "pack", spec, "--silent"], cwd=dest, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SynthError(f"npm pack {spec} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    tgz = dest / f"fontsource-{name}-{version}.tgz"
    if not tgz.is_file():
        raise SynthError(f"npm pack {spec} wrote no {tgz.name}")
    return tgz


def fetch_faces(
    cache: str | os.PathLike | None = None,
    faces: dict[str, str] | None = None,
    callback: Callable[[FaceResult], None] | None = None,
    timeout: float = 120.0,
) -> list[FaceResult]:
    """Fetch (with `npm pack`, cached), merge and coverage-check every face; write `fonts.json`.

    Tarballs already in `<cache>/npm/` are not fetched again, so a second run is offline.

    Args:
        cache: cache folder (default `fonts_cache()`).
        faces: name -> version (default `HANDWRITING_FACES`).
        callback: called with each face's result as it is done (progress).
        timeout: seconds allowed for one `npm pack`.

    Returns:
        One result per face; `covered` ones are in `<cache>/ttf/`, the others are removed from it.
    """
    root = Path(cache) if cache is not None else fonts_cache()
    faces = HANDWRITING_FACES if faces is None else faces
    (root / "npm").mkdir(parents=True, exist_ok=True)
    (root / "ttf").mkdir(parents=True, exist_ok=True)
    results = []
    for name, version in faces.items():
        res = FaceResult(name, version, held_out=name in HELD_OUT_FACES)
        out = root / "ttf" / f"{name}.ttf"
        try:
            tgz = root / "npm" / f"fontsource-{name}-{version}.tgz"
            if not tgz.is_file():
                if not npm_available():
                    raise SynthError("npm is not installed")
                tgz = _npm_pack(name, version, root / "npm", timeout)
            with tempfile.TemporaryDirectory() as tmp, tarfile.open(tgz) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("package/files/")]
                tar.extractall(tmp, members=members, filter="data")
                files = subset_files(Path(tmp) / "package", name)
                if not files:
                    raise SynthError("no 400-normal subset files in the package")
                merge_face(files, out)
            res.path = str(out)
            res.missing = missing_chars(out, REQUIRED_CHARS)
            res.covered = not res.missing
            if not res.covered:
                out.unlink()
                res.path = None
                logger.info("font %s skipped: no glyph for %r", name, res.missing[:30])
        except (SynthError, OSError, subprocess.TimeoutExpired, tarfile.TarError, Exception) as ex:  # noqa: B014
            res.error = str(ex)[:300]
            logger.warning("font %s@%s not usable: %s", name, version, res.error)
            if out.exists():
                out.unlink()
        results.append(res)
        if callback is not None:
            callback(res)
    manifest = {
        "source": "Fontsource packages on the npm registry (SIL Open Font License)",
        "held_out": list(HELD_OUT_FACES),
        "faces": [vars(r) for r in results],
    }
    (root / "fonts.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return results


@dataclass(frozen=True)
class FontChoice:
    """The fonts a synth run uses, where they come from, and why, when it fell back."""

    fonts: tuple[Path, ...]
    source: str  # "handwriting", "system" (asked for), "system-fallback" or "explicit"
    selection: str
    warning: str = ""


def resolve_fonts(
    selection: str = "train",
    font_dirs: Iterable[str | os.PathLike] = (),
    cache: str | os.PathLike | None = None,
) -> FontChoice:
    """The fonts for a synth run: the cached handwriting faces of `selection`, else the system ones.

    When no merged handwriting face is in the cache (npm unavailable, or `make fonts` not run), it
    falls back to the fonts found by `find_fonts` (DejaVu, Noto, Andika and `font_dirs`), logs a
    warning and says so in the result (synth.json records it).

    Args:
        selection: "train", "held-out" or "all" (see `HELD_OUT_FACES`), or "system": only the
            system fonts and `font_dirs`, on every machine the same, whatever the cache holds.
        font_dirs: extra folders of fonts, added to the handwriting faces (or to the fallback).
        cache: the font cache (default `fonts_cache()`).
    """
    from vhrdata.synth.fonts import find_fonts

    if selection == "system":
        return FontChoice(tuple(find_fonts(extra_dirs=font_dirs)), "system", selection)
    faces = handwriting_fonts(selection, cache)
    extra = find_fonts(extra_dirs=font_dirs, system=False) if font_dirs else []
    if faces:
        return FontChoice(tuple(faces) + tuple(extra), "handwriting", selection)
    root = Path(cache) if cache is not None else fonts_cache()
    warning = (
        f"no handwriting fonts for --fonts {selection} in {root}/ttf (run `make fonts`; it needs npm); "
        "falling back to the system fonts (DejaVu/Noto/Andika), which do not look handwritten"
    )
    logger.warning("%s", warning)
    return FontChoice(tuple(find_fonts(extra_dirs=font_dirs)), "system-fallback", selection, warning)
