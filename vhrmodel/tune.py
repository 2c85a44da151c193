"""Tune beam-search decoding on val: `tune_lm()` behind `vhrmodel tune-lm`.

The model runs once over the split; then every LM weight of `weights` is tried with beam search
(without the lexicon) at each beam width of `beam_width`, and with the lines of the best
`lexicon_pairs` (width, weight) pairs every lexicon setting of `snap_grid`: the width and weight
that read best alone need not be the ones the lexicon does best after (rescoring weighs the LM by the
same weight). The chosen values go into the LM file's "tuned" record (`vhrmodel.lm`), which
`predict`, `evaluate` and `serve` then use as defaults (the width included). Ties go to the earlier
setting (the narrower beam, the smaller weight, the better pair alone; no lexicon unless it lowers
the CER).

The test split is never tuned on: any split named "test" or "test-..." is refused.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Sequence

from vhrdata.errors import StoreError

#: LM weights tried by default: steps of 0.05 up to 0.3, where the best weights of real runs lie
#: (run I, val: 0.1 and 0.2 within 0.01 points), then steps of 0.1.
DEFAULT_WEIGHTS = tuple(round(0.05 * k, 2) for k in range(6)) + tuple(round(0.1 * k, 1) for k in range(3, 11))
#: (width, weight) pairs, best first by CER alone, whose lines the lexicon settings are tried on.
DEFAULT_LEXICON_PAIRS = 3
#: Lexicon thresholds tried by default (each combination, with confidence "min").
DEFAULT_SNAP_GRID = {"min_score": (75.0, 80.0, 85.0, 90.0), "min_margin": (3.0, 6.0, 10.0),
                     "max_confidence": (0.5, 0.7, 0.9, 1.01), "hierarchy": (False, True),
                     "min_score_within": (50.0, 60.0, 70.0, 80.0), "prefixes": (False, True)}
#: Rescoring settings tried by default after `DEFAULT_SNAP_GRID` (`vhrmodel.lexicon`; string thresholds do not apply).
DEFAULT_RESCORE_GRID = {"rescore": (True,), "hierarchy": (True,), "max_confidence": (0.7, 0.9, 1.01),
                        "unit_bonus": (0.0, 4.0, 8.0, 16.0, 24.0, 32.0), "prefixes": (False, True),
                        "streets": (False, True), "street_bonus": (2.0, 4.0, 8.0, 16.0)}

TEST_REFUSED = "tune-lm never tunes on a test split ({split!r}); tune on --split val and report test with evaluate"


def check_tune_split(split: str) -> None:
    """Refuse test splits ("test", "test-camera" ...).

    Raises:
        ValueError: with `TEST_REFUSED`.
    """
    if split == "test" or split.startswith("test-") or split.startswith("test_"):
        raise ValueError(TEST_REFUSED.format(split=split))


def snap_settings_grid(grid: dict[str, Sequence[float]] | None = None) -> list:
    """Every `SnapSettings` of a {field: values} grid (default `DEFAULT_SNAP_GRID`)."""
    from vhrmodel.lexicon import SnapSettings

    grid = DEFAULT_SNAP_GRID if grid is None else grid
    keys = list(grid)
    settings = []
    for values in itertools.product(*(grid[k] for k in keys)):
        snap = SnapSettings(**dict(zip(keys, values)))
        # Without the hierarchy, min_score_within changes nothing: try one value of it.
        if not snap.hierarchy and "min_score_within" in grid and snap.min_score_within != grid["min_score_within"][0]:
            continue
        # Without streets, street_bonus changes nothing: try one value of it.
        if not snap.streets and "street_bonus" in grid and snap.street_bonus != grid["street_bonus"][0]:
            continue
        settings.append(snap)
    return settings


def tune_lm(
    model_path,
    store_path: str | Path,
    lm_path: str | Path,
    *,
    split: str = "val",
    out: str | Path | None = None,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    snap_grid: dict[str, Sequence[Any]] | Sequence[dict[str, Sequence[Any]]] | None = None,
    lexicon=None,
    beam_width: int | Sequence[int] = 10,
    lexicon_pairs: int = DEFAULT_LEXICON_PAIRS,
    batch_size: int = 16,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Grid-search the LM weight and the lexicon thresholds on a split; store them in the LM file.

    Args:
        model_path: a model file, export folder or "starter".
        store_path: the store; its preprocessing must be the model's.
        lm_path: the LM file (`RUN/charlm.json`).
        split: the split to tune on (never a test split).
        out: where to write the tuned LM; default `lm_path` itself (replaced atomically).
        weights: LM weights to try.
        snap_grid: lexicon thresholds to try ({SnapSettings field: values}), or a list of such
            grids; default `DEFAULT_SNAP_GRID` and `DEFAULT_RESCORE_GRID`; {} skips the lexicon.
        lexicon: the `vhrmodel.lexicon.Lexicon`; default `lexicon_for(the LM)`: the vietnamadminunits
            names plus the units of the LM's training labels.
        beam_width: beams kept, or several widths to choose from (each tried with every weight).
        lexicon_pairs: how many of the best (width, weight) pairs without the lexicon the lexicon
            settings are each tried after (1: only the best pair's lines).
        batch_size: lines per model call.
        callback: called with each result row ({"beam_width", "lm_weight", "lexicon", "cer"}) as it is
            measured.

    Returns:
        {"tuned": the record written, "rows": every setting with its CER, "path": the file}.

    Raises:
        ValueError: a test split, no weights, no or a non-positive beam width, `lexicon_pairs` < 1, or
            `lm_path` is not an LM file.
        StoreError: the store lacks the split or was preprocessed differently.
    """
    from vhrdata.store import open_store
    from vhrmodel.lm import read_char_lm, write_tuned
    from vhrmodel.metrics import cer, normalize_text
    from vhrmodel.predict import Recognizer

    check_tune_split(split)
    if not weights:
        raise ValueError("weights must hold at least one LM weight")
    widths = [int(beam_width)] if isinstance(beam_width, int) else [int(w) for w in beam_width]
    if not widths or min(widths) < 1:
        raise ValueError(f"beam widths must be one or more positive numbers, got {beam_width!r}")
    if lexicon_pairs < 1:
        raise ValueError(f"lexicon_pairs must be at least 1, got {lexicon_pairs!r}")
    store = open_store(store_path)
    lm = read_char_lm(lm_path)
    recognizer = Recognizer(model_path, decoder="beam", beam_width=widths[0], lm=lm, lm_weight=0.0)
    if recognizer.settings != store.settings:
        raise StoreError(f"store {store_path} was preprocessed differently from the model's training data "
                         f"({'; '.join(recognizer.settings.diff(store.settings))})")
    try:
        ds = store.split(split)
    except (KeyError, ValueError, StoreError):
        raise StoreError(f"store {store_path} has no {split!r} lines; choose another --split") from None
    batches, refs = [], []
    for b in ds.batches(batch_size=batch_size, shuffle=False):
        images = [b.images[i, :, : int(b.widths[i])] for i in range(len(b.texts))]
        logits, lengths = recognizer.logits(images)
        batches.append((logits, lengths))
        refs.extend(normalize_text(t) for t in b.texts)
    if not refs:
        raise StoreError(f"store {store_path} has no {split!r} lines; choose another --split")

    def emit(row):
        rows.append(row)
        if callback is not None:
            callback(row)

    rows: list[dict[str, Any]] = []
    decoded: dict[tuple[int, float], list[tuple[list[str], list[float]]]] = {}
    for width in widths:
        recognizer.beam_width = width
        for w in weights:
            recognizer.lm_weight = float(w)
            decoded[width, float(w)] = [recognizer.decode(logits, lengths) for logits, lengths in batches]
            hyps = [normalize_text(t) for texts, _ in decoded[width, float(w)] for t in texts]
            emit({"beam_width": width, "lm_weight": float(w), "lexicon": None, "cer": cer(refs, hyps)})
    plain = sorted(rows, key=lambda r: r["cer"])  # stable: equal CERs keep the earlier setting first

    default_snap = None
    grids = [DEFAULT_SNAP_GRID, DEFAULT_RESCORE_GRID] if snap_grid is None else \
        ([] if snap_grid == {} else list(snap_grid) if isinstance(snap_grid, (list, tuple)) else [snap_grid])
    settings_list = [snap for grid in grids for snap in snap_settings_grid(grid)]
    if settings_list:
        if lexicon is None:
            from vhrmodel.lexicon import lexicon_for

            lexicon = lexicon_for(lm)
        recognizer.lexicon = lexicon
        for pair in plain[:lexicon_pairs]:
            width, weight = pair["beam_width"], pair["lm_weight"]
            recognizer.beam_width, recognizer.lm_weight = width, weight
            lines = decoded[width, weight]
            char_confs = [[[conf for _, _, conf in spans] for spans in recognizer.char_spans(texts, logits, lengths)]
                          for (texts, _), (logits, lengths) in zip(lines, batches)]
            # One memoising scorer per line for all the settings: rescoring settings mostly score the same lines.
            scorers = [[recognizer.line_scorer(logits[i, : int(lengths[i])], memo={}) for i in range(len(texts))]
                       for (texts, _), (logits, lengths) in zip(lines, batches)]
            for snap in settings_list:
                hyps = []
                for (texts, confs), (logits, lengths), per_char, line_scorers in zip(lines, batches, char_confs,
                                                                                     scorers):
                    snapped, _ = recognizer.apply_lexicon(texts, confs, logits, lengths, snap=snap,
                                                          char_confs=per_char, scorers=line_scorers)
                    hyps.extend(normalize_text(t) for t in snapped)
                emit({"beam_width": width, "lm_weight": weight, "lexicon": snap.to_dict(), "cer": cer(refs, hyps)})
        default_snap = type(settings_list[0])().to_dict()  # the documented defaults, for a later --lexicon
    # The lowest CER; of equal ones the first: no lexicon before any, the better pair's lines before the next.
    best = min(rows, key=lambda r: r["cer"])
    best_width, best_weight, best_cer = best["beam_width"], best["lm_weight"], best["cer"]
    use_lexicon = best["lexicon"] is not None
    tuned = {
        "lm_weight": best_weight,
        "lexicon": use_lexicon,
        "snap": best["lexicon"] if use_lexicon else default_snap,
        "tuned_on": {"model": str(model_path), "store": str(store_path), "split": split, "lines": len(refs),
                     "beam_width": best_width, "cer": best_cer},
    }
    if tuned["snap"] is None:
        del tuned["snap"]
    path = write_tuned(lm_path, tuned, out)
    return {"tuned": tuned, "rows": rows, "path": str(path)}
