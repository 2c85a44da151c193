"""Fetch the pinned Fontsource handwriting faces into a cache and merge them (run by `make fonts`).

    .venv/bin/python scripts/fetch_fonts.py [--cache ~/.cache/vhr/fonts]

Exits 0 when at least one face passed the coverage check; with no npm and an empty cache it says so
and exits 0 too, so `make fonts` never breaks a clean build (the generator then falls back to the
system fonts and records that in synth.json).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vhrdata.synth.fontsource import HANDWRITING_FACES, fetch_faces, fonts_cache, npm_available


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None, help="cache folder [default: $VHR_FONTS_DIR or ~/.cache/vhr/fonts]")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cache = args.cache or fonts_cache()
    if not npm_available() and not (cache / "npm").is_dir():
        print(f"fonts: npm is not installed and {cache}/npm is empty; synth will use the system fonts.")
        return 0

    def report(res) -> None:
        state = "ok" if res.covered else ("error: " + res.error if res.error else f"missing {res.missing[:20]!r}")
        print(f"fonts: {res.name}@{res.version}{' (held out)' if res.held_out else ''}: {state}", flush=True)

    results = fetch_faces(cache, HANDWRITING_FACES, callback=report)
    ok = sum(r.covered for r in results)
    print(f"fonts: {ok}/{len(results)} faces cover every character → {cache}/ttf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
