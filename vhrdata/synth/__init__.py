"""Synthetic handwritten Vietnamese address lines: word lists, fonts, writers, rendering, layouts.

Example:
    >>> from vhrdata.synth import generate_texts, make_writers, render_line
    >>> import numpy as np
    >>> text = generate_texts(1, seed=0)[0]
    >>> image = render_line(text, make_writers(1, seed=0)[0], np.random.default_rng(0))
    >>> image.ndim
    2
"""

from vhrdata.synth.addresses import (
    Unit,
    address_corpus,
    admin_units_db,
    generate_address,
    generate_address_unit,
    generate_texts,
    load_gazetteer,
)
from vhrdata.synth.camera import SYNTH_CAMERA, TEST_CAMERA, TEST_CAMERA_SEED, CameraRanges, camera_degrade
from vhrdata.synth.fonts import REQUIRED_CHARS, VIETNAMESE_LETTERS, covers, draws_letters, find_fonts, missing_chars
from vhrdata.synth.fontsource import (
    FONT_SELECTIONS,
    HANDWRITING_FACES,
    HELD_OUT_FACES,
    handwriting_fonts,
    resolve_fonts,
)
from vhrdata.synth.generate import LAYOUTS, default_workers, line_captures, synthesize
from vhrdata.synth.render import CAPTURES, DEFAULT_HEIGHT, WriterStyle, make_writers, render_line

__all__ = [
    "address_corpus",
    "CAPTURES",
    "FONT_SELECTIONS",
    "HANDWRITING_FACES",
    "HELD_OUT_FACES",
    "SYNTH_CAMERA",
    "TEST_CAMERA",
    "TEST_CAMERA_SEED",
    "CameraRanges",
    "Unit",
    "admin_units_db",
    "camera_degrade",
    "generate_address_unit",
    "handwriting_fonts",
    "line_captures",
    "resolve_fonts",
    "DEFAULT_HEIGHT",
    "LAYOUTS",
    "REQUIRED_CHARS",
    "VIETNAMESE_LETTERS",
    "WriterStyle",
    "covers",
    "default_workers",
    "find_fonts",
    "generate_address",
    "generate_texts",
    "load_gazetteer",
    "make_writers",
    "missing_chars",
    "draws_letters",
    "render_line",
    "synthesize",
]
