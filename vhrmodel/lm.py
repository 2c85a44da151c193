"""Character LMs for beam search: built from training labels plus an address corpus, read, tuned.

An LM file is the JSON of a `vhrmodel.decoding.CharNgramLM` (order, vocabulary, counts) with a
"meta" object beside the counts:

- "built": how it was made: `order`, `labels_share` and one entry per source (`name`, `lines`,
  `events` (characters plus one end symbol per line), `weight` (what each n-gram occurrence of
  that source counts as)). `vhrmodel train` writes RUN/charlm.json this way.
- "tuned" (written by `vhrmodel tune-lm`, on val only): `lm_weight`, `lexicon` (whether the
  lexicon step helped on val), `snap` (the lexicon thresholds, `vhrmodel.lexicon.SnapSettings`)
  and `tuned_on` (model, store, split, CER). `Recognizer` takes these as its defaults; an explicit
  `lm_weight` (`--lm-weight`) wins.
- "units": the (province, district, ward) units the training labels name
  (`vhrmodel.lexicon.units_in_labels`); the lexicon step snaps to them as well as to the
  gazetteer's names (`vhrmodel.lexicon.lexicon_for`).
- "streets": the street names of the training labels' house-number fields
  (`vhrmodel.lexicon.streets_in_labels`); rescoring with `SnapSettings.streets` reads them beside
  the generator's street list.

Files written before "meta" existed load unchanged (no build record, no tuned values).

Weighting. The corpus names every administrative unit (`vhrdata.synth.addresses.address_corpus`),
far more text than the labels, and written in another distribution (every ward once, no house
numbers or streets). So the sources are weighted so that the training labels keep
`labels_share` of the n-gram occurrences (default 0.8): with N_L and N_C the occurrences of labels
and corpus, labels count s * N_C and corpus lines (1 - s) * N_L per occurrence, both divided by the
smaller of the two, so the lighter source keeps integer counts of 1. The labels then stay the
model of what real lines look like, and the corpus adds the spellings of names the labels never
contain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from vhrdata.store.disk_format import write_text_atomic
from vhrmodel.decoding import CharNgramLM

#: Share of n-gram occurrences the training labels keep when a corpus is added.
LABELS_SHARE = 0.8
#: n of the run LM that `vhrmodel train` and `vhrmodel build-lm` write by default. Address lines
#: repeat long unit names, so long contexts pay: see docs/RESULTS.md ("LM order").
LM_ORDER = 8
#: Whether the run LM sees digits as one class (`CharNgramLM.digit_class`): house numbers are
#: arbitrary, and an LM that knows them by name pulls read numbers toward its text's.
LM_DIGIT_CLASS = True
#: LM weight of beam search when neither the user nor the LM file's tuned values give one.
DEFAULT_LM_WEIGHT = 0.5
#: Beams kept when neither the user nor the LM file's tuned values give a width.
DEFAULT_BEAM_WIDTH = 10
#: Name of the address corpus source in the "built" record.
ADDRESS_CORPUS = "vietnamadminunits addresses"

__all__ = ["LABELS_SHARE", "LM_ORDER", "LM_DIGIT_CLASS", "DEFAULT_LM_WEIGHT", "ADDRESS_CORPUS", "build_char_lm", "write_char_lm",
           "write_store_lm",
           "read_char_lm", "tuned_values", "resolve_lm_weight", "resolve_beam_width", "resolve_lexicon", "write_tuned",
           "DEFAULT_BEAM_WIDTH"]


def _events(texts: list[str]) -> int:
    return sum(len(t) + 1 for t in texts)  # one end symbol per line


def build_char_lm(labels: Iterable[str], corpus: Iterable[str] | None = None, *, order: int = 5,
                  labels_share: float = LABELS_SHARE, corpus_name: str = ADDRESS_CORPUS,
                  digit_class: bool = False) -> CharNgramLM:
    """Fit a character n-gram LM on training labels and, optionally, a text corpus.

    Args:
        labels: the training labels (never val or test text).
        corpus: extra lines, such as `vhrdata.synth.addresses.address_corpus()`; None or empty
            fits the labels alone.
        order: n of the n-gram.
        labels_share: share of n-gram occurrences the labels keep, in (0, 1] (see the module
            docstring); 1 ignores the corpus.
        corpus_name: how the corpus is named in the "built" record.
        digit_class: every digit is one class to the LM (`CharNgramLM(digit_class=True)`).

    Returns:
        The LM, with `meta["built"]` describing its sources.

    Example:
        >>> lm = build_char_lm(["Phường 3, Quận 5"], ["Phường Tân Định, Quận 1"], order=3, labels_share=0.5)
        >>> [round(s["weight"], 3) for s in lm.meta["built"]["sources"]]
        [1.412, 1.0]
    """
    if not 0.0 < labels_share <= 1.0:
        raise ValueError(f"labels_share must be in (0, 1]. Received: labels_share={labels_share}")
    labels = list(labels)
    corpus = list(corpus or []) if labels_share < 1.0 else []
    n_labels, n_corpus = _events(labels), _events(corpus)
    w_labels, w_corpus = 1.0, 1.0
    if labels and corpus:
        w_labels, w_corpus = labels_share * n_corpus, (1.0 - labels_share) * n_labels
        smaller = min(w_labels, w_corpus)
        w_labels, w_corpus = w_labels / smaller, w_corpus / smaller
    lm = CharNgramLM(order=order, digit_class=digit_class)
    sources = []
    if labels:
        lm.fit(labels, weight=w_labels)
        sources.append({"name": "training labels", "lines": len(labels), "events": n_labels, "weight": w_labels})
    if corpus:
        lm.fit(corpus, weight=w_corpus)
        sources.append({"name": corpus_name, "lines": len(corpus), "events": n_corpus, "weight": w_corpus})
    share = labels_share if labels and corpus else (1.0 if labels else 0.0)
    lm.meta = {"built": {"order": int(order), "labels_share": share, "digit_class": bool(digit_class),
                         "sources": sources}}
    from vhrmodel.lexicon import streets_in_labels, units_in_labels

    units = units_in_labels(labels)
    if units:  # the lexicon adds them to the gazetteer's names (`vhrmodel.lexicon.lexicon_for`)
        lm.meta["units"] = [list(u) for u in units]
    streets = streets_in_labels(labels)
    if streets:  # ... and these to the generator's street names
        lm.meta["streets"] = streets
    return lm


def write_char_lm(labels: Iterable[str], path: str | Path, order: int = 5, *, corpus: Iterable[str] | None = None,
                  labels_share: float = LABELS_SHARE, corpus_name: str = ADDRESS_CORPUS,
                  digit_class: bool = False) -> Path:
    """Fit an LM with `build_char_lm` and write it as JSON (atomically: temp file, then rename).

    Args:
        labels: the training labels only.
        path: the file to write.
        order: n of the n-gram.
        corpus: optional extra lines (see `build_char_lm`).
        labels_share: share of n-gram occurrences the labels keep.
        corpus_name: how the corpus is named in the file's "built" record.
        digit_class: every digit is one class to the LM.

    Returns:
        `path`.
    """
    lm = build_char_lm(labels, corpus, order=order, labels_share=labels_share, corpus_name=corpus_name,
                       digit_class=digit_class)
    return write_text_atomic(Path(path), lm.to_json())


def write_store_lm(store, path: str | Path, *, split: str = "train", order: int = LM_ORDER, address_lm: bool = True,
                   seed: int = 0, digit_class: bool = LM_DIGIT_CLASS) -> Path:
    """A run's LM (RUN/charlm.json): a store split's labels, plus the address corpus of every
    administrative unit when `address_lm`. `vhrmodel train` and `vhrmodel build-lm` both write it
    here.

    Args:
        store: an opened store (`vhrdata.store.open_store`).
        path: the file to write (atomically).
        split: the split whose labels train it: the training split, never val or test.
        order: n of the n-gram.
        address_lm: add `vhrdata.synth.addresses.address_corpus(seed)`.
        seed: the corpus' seed (which written forms are drawn).
        digit_class: every digit is one class to the LM (`LM_DIGIT_CLASS`).
    """
    corpus = None
    if address_lm:
        from vhrdata.synth.addresses import address_corpus

        corpus = address_corpus(seed=seed)
    return write_char_lm((sample.text for sample in store.split(split)), path, order=order, corpus=corpus,
                         digit_class=digit_class)


def read_char_lm(path: str | Path) -> CharNgramLM:
    """Read an LM file (with or without "meta").

    Raises:
        OSError: it cannot be read.
        ValueError: it is not an LM file (the message says why).
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        return CharNgramLM.from_json(text)
    except (KeyError, TypeError, AttributeError) as ex:
        raise ValueError(f"missing or malformed field {ex}") from None


def tuned_values(lm: CharNgramLM | None) -> dict[str, Any]:
    """The "tuned" record of an LM ({} when it has none, or for no LM)."""
    if lm is None:
        return {}
    tuned = lm.meta.get("tuned") or {}
    return tuned if isinstance(tuned, dict) else {}


def resolve_lm_weight(lm: CharNgramLM | None, lm_weight: float | None) -> float:
    """The LM weight to decode with: the explicit one, else the LM's tuned one, else the default."""
    if lm_weight is not None:
        return float(lm_weight)
    tuned = tuned_values(lm).get("lm_weight")
    return float(tuned) if tuned is not None else DEFAULT_LM_WEIGHT


def resolve_beam_width(lm: CharNgramLM | None, beam_width: int | None) -> int:
    """The beam width to decode with: the explicit one, else the width the LM was tuned at
    (`tune-lm --beam-width`, its "tuned_on" record), else `DEFAULT_BEAM_WIDTH`."""
    if beam_width is not None:
        return int(beam_width)
    tuned = (tuned_values(lm).get("tuned_on") or {}).get("beam_width")
    return int(tuned) if isinstance(tuned, int) and tuned >= 1 else DEFAULT_BEAM_WIDTH


def resolve_lexicon(lm: CharNgramLM | None, lexicon: bool | None) -> bool:
    """Whether to snap with the lexicon: the explicit choice, else what tuning chose (off if untuned)."""
    if lexicon is not None:
        return bool(lexicon)
    return bool(tuned_values(lm).get("lexicon", False))


def write_tuned(lm_path: str | Path, tuned: dict[str, Any], out: str | Path | None = None) -> Path:
    """Store tuned decoding values in an LM file's meta (temp file, then rename).

    Args:
        lm_path: the LM file to read.
        tuned: the "tuned" record (replaces an earlier one).
        out: where to write; default `lm_path` itself.

    Returns:
        The written path.

    Raises:
        ValueError: `lm_path` is not an LM file.
    """
    data = json.loads(Path(lm_path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "counts" not in data:
        raise ValueError(f"{lm_path} is not a character LM file (no counts)")
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    meta["tuned"] = tuned
    data["meta"] = meta
    return write_text_atomic(Path(out if out is not None else lm_path), json.dumps(data, ensure_ascii=False))
