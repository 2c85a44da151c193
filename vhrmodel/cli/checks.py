"""Checks the `vhrmodel` commands run before Keras is imported, so a mistake costs a second, not 30.

Everything here reads only small files (a store's `index.json` and shard metadata through
`vhrdata.store.open_store`, a model path's existence) and never imports Keras or TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import click

from vhrdata.errors import StoreError
from vhrmodel.errors import ModelFileError

class ArgumentError(click.ClickException):
    """A bad combination of options: a one-line `Error: …` (no usage block), exit status 2 like click's."""

    exit_code = 2


# One message for --lm without --decoder beam, in predict and evaluate alike.
LM_NEEDS_BEAM = "--lm is only used by beam search; add --decoder beam (and optionally --beam-width), or drop --lm"


LM_WEIGHT_NEEDS_LM = "--lm-weight weights the character LM; add --lm LM.json (with --decoder beam), or drop --lm-weight"
LEXICON_NEEDS_BEAM_LM = ("--lexicon snaps the output of beam search with an LM; add --decoder beam --lm LM.json, "
                         "or drop --lexicon")


def check_lm_decoder(lm: str | None, decoder: str, lm_weight: float | None = None,
                     lexicon: bool | None = None) -> None:
    """Refuse decoding options that would silently do nothing.

    --lm without --decoder beam, --lm-weight without --lm, and --lexicon without both.
    """
    if lm is not None and decoder != "beam":
        raise ArgumentError(LM_NEEDS_BEAM)
    if lm_weight is not None and lm is None:
        raise ArgumentError(LM_WEIGHT_NEEDS_LM)
    if lexicon and (lm is None or decoder != "beam"):
        raise ArgumentError(LEXICON_NEEDS_BEAM_LM)


def check_model_path(model: str, option: str = "--model") -> None:
    """Refuse a model argument that cannot be opened: "starter", an export folder or a model file.

    Raises:
        ModelFileError: it does not exist, is a folder without an export, or (starter) is not shipped.
        MissingDependencyError: it is a Keras model file and Keras is not installed.
    """
    from vhrmodel.extras import require_keras

    if model == "starter":
        from vhrmodel.starter import starter_path

        starter_path()
        require_keras(f"{option} starter (a Keras model)")
        return
    path = Path(model)
    if path.is_dir():
        from vhrmodel.export import MANIFEST

        if not (path / MANIFEST).is_file():
            hint = f" (e.g. {path / 'model.keras'})" if (path / "model.keras").is_file() else ""
            raise ModelFileError(f"{option} {path} is a folder but not an export (no {MANIFEST}); "
                                 f"pass the model file inside it{hint}")
        return
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist; train one with `vhrmodel train`, or use {option} starter")
    require_keras(f"{option} {path} (a Keras model)")


def open_store_checked(store_path: str, splits: dict[str, str]):
    """Open a store (Keras-free) and require lines in each named split.

    Args:
        store_path: the store folder.
        splits: split name -> what it is needed for ("training", "validation", ...), for the message.

    Raises:
        StoreError: the store is missing, damaged, or a split is empty.
    """
    from vhrdata.store import open_store

    path = Path(store_path)
    if not path.exists():
        raise StoreError(f"store {path} does not exist; build one with `vhrdata build-lmdb RECORDS --out {path}`")
    store = open_store(path)
    counts = {name: int(info.get("count", 0)) for name, info in store.index.get("splits", {}).items()}
    for name, purpose in splits.items():
        if not counts.get(name):
            raise StoreError(
                f"store {path} has no {name!r} lines for {purpose} (lines per split: {counts}); re-run "
                f"`vhrdata split` with a non-zero ratio for {name!r}, then `vhrdata build-lmdb`, "
                "or choose another split"
            )
    return store


def check_out_folder(out: str, option: str = "--out") -> None:
    """Refuse an output folder path that is an existing file."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"{option} {path} is a file; choose a folder")
