"""The starter model shipped in the package: trained only on vhr's own synthetic lines.

`vhrmodel predict --model starter` and `vhrmodel train --init-from starter` resolve it. Its
model card (`MODEL_CARD.md` beside it) says how it was trained and what it reads.
"""

from __future__ import annotations

from pathlib import Path

from vhrmodel.errors import ModelFileError

#: The name that stands for the shipped model wherever a model file is asked for.
STARTER_NAME = "starter"
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


def resolve_model(model: str | Path) -> Path:
    """The file a model argument names: "starter" is the shipped starter, anything else a path.

    Raises:
        ModelFileError: "starter", and this installation has no starter model.
    """
    return starter_path() if str(model) == STARTER_NAME else Path(model)
