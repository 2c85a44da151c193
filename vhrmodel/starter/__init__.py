"""The starter model shipped in the package: trained only on vhr's own synthetic lines.

`vhrmodel predict --model starter` and `vhrmodel train --init-from starter` resolve it. Its
model card (`MODEL_CARD.md` beside it) says how it was trained and what it reads.
"""

from __future__ import annotations

from pathlib import Path

from vhrmodel.errors import ModelFileError

STARTER_FILE = Path(__file__).with_name("starter.keras")
#: The line height the starter was trained at (its file carries all its preprocessing settings);
#: a store built to fine-tune it uses this height (`vhrdata build-lmdb --height 32`).
STARTER_HEIGHT = 32


def starter_path() -> Path:
    """The shipped starter model file.

    Raises:
        ModelFileError: this installation has no starter model.
    """
    if not STARTER_FILE.is_file():
        raise ModelFileError(
            f"this vhr installation ships no starter model ({STARTER_FILE} is missing); "
            "train one with `vhrmodel train`, or reinstall vhr"
        )
    return STARTER_FILE
