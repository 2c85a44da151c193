"""Lexicon snapping: correct a misread administrative unit name, only where that is safe.

A decoded line is split into comma-separated fields. A field is snapped to the nearest name of
the lexicon (every ward, district and province of vietnamadminunits, in both tone placements,
and the provinces' other spellings such as "HCM") when all of these hold:

- its name part has at least `min_chars` letters and no digit (numbered wards, house numbers and
  streets with numbers are never touched);
- the best name scores at least `min_score` (rapidfuzz `fuzz.ratio`, 0-100, case-blind) and
  beats the best *other* name by at least `min_margin` (two spellings of one name are one
  name), so an ambiguous field is left alone;
- the model was unsure of it: the `confidence` ("min" or "mean") of the per-character
  confidences of the name part (`vhrmodel.predict.CharInfo.confidence`) is below
  `max_confidence`; a confidently read field is kept even if it is not in the lexicon.

The user's prefix is kept as written ("P.", "Phường", "Q.", "TX", "Tỉnh" ...; the forms of
`vhrdata.synth.addresses`) and decides which names are candidates: a ward prefix matches ward
names, a district prefix district names, a province prefix (or no prefix at all) province
names; "TP"/"Thành phố" matches districts and provinces. A name written in capitals is snapped
to capitals.

Defaults (`SnapSettings`): min_score 80, min_margin 6, max_confidence 0.9 on the "min"
confidence, min_chars 4. `vhrmodel tune-lm` tunes them on val and stores them in the LM file.

Example:
    >>> lex = Lexicon({"ward": ["Tân Định", "Tân Bình"], "district": ["Bình Thạnh"], "province": ["Hà Nội"]})
    >>> text = "P. Tân Đnh, Hà Nội"
    >>> snap_fields(text, [0.99] * 3 + [0.4] * 7 + [0.99] * 8, lex)[0]
    'P. Tân Định, Hà Nội'
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping, Sequence

GROUPS = ("ward", "district", "province")
CONFIDENCE_MODES = ("min", "mean")

__all__ = ["GROUPS", "SnapSettings", "Snap", "Lexicon", "snap_fields", "default_lexicon"]


@dataclass(frozen=True)
class SnapSettings:
    """When `snap_fields` replaces a field (see the module docstring).

    Args:
        min_score: the best name's rapidfuzz ratio (0-100) must be at least this.
        min_margin: ... and exceed the second-best other name's by at least this.
        max_confidence: snap only when the field's confidence is below this (1.01: always).
        confidence: "min" or "mean" of the name part's per-character confidences.
        min_chars: name parts with fewer letters are never snapped.
    """

    min_score: float = 80.0
    min_margin: float = 6.0
    max_confidence: float = 0.9
    confidence: str = "min"
    min_chars: int = 4

    def __post_init__(self):
        if self.confidence not in CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_MODES}. Received: confidence={self.confidence!r}")
        if not 0 <= self.min_score <= 100 or self.min_margin < 0 or self.min_chars < 1:
            raise ValueError(f"min_score must be in [0, 100], min_margin >= 0 and min_chars >= 1. Received: {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SnapSettings":
        """Settings from a dict (unknown keys are refused)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown snap settings {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


@dataclass(frozen=True)
class Snap:
    """One replaced field: its index among the comma-separated fields, old and new text, why."""

    field: int
    before: str
    after: str
    score: float
    margin: float
    confidence: float


def _unit_prefixes() -> dict[str, frozenset[str]]:
    """Written prefix (casefolded, stripped) -> the groups it names, from the synthetic address forms."""
    from vhrdata.synth.addresses import DISTRICT_PREFIXES, NUMBERED_WARD_PREFIXES, PROVINCE_PREFIXES, WARD_PREFIXES

    out: dict[str, set[str]] = {}
    tables = [("ward", NUMBERED_WARD_PREFIXES)] + [("ward", t) for t in WARD_PREFIXES.values()]
    tables += [("district", t) for t in DISTRICT_PREFIXES.values()]
    tables += [("province", t) for t in PROVINCE_PREFIXES.values()]
    for group, table in tables:
        for prefix in table:
            key = prefix.strip().casefold()
            if key:
                out.setdefault(key, set()).add(group)
    return {k: frozenset(v) for k, v in out.items()}


def _name_key(name: str) -> str:
    """What makes two spellings one name: letters and digits, case-blind."""
    return " ".join(re.sub(r"[\W_]+", " ", name.casefold()).split())


class Lexicon:
    """Administrative unit names by group ("ward", "district", "province"), for `snap_fields`.

    Args:
        names: group -> names; a name may be a str, or a (written form, canonical name) pair
            to count several spellings as one name (for the margin). Names that differ only in
            case and punctuation ("Văn Miếu - Quốc Tử Giám", "Văn Miếu Quốc Tử Giám") are one
            name too. Each name is also added in the old tone placement ("Hoà" for "Hòa").
        prefixes: written prefix -> groups; default the forms of `vhrdata.synth.addresses`.

    Raises:
        MissingDependencyError: rapidfuzz, which matches the names, is not installed.
    """

    def __init__(self, names: Mapping[str, Iterable[str | tuple[str, str]]],
                 prefixes: Mapping[str, Iterable[str]] | None = None):
        from vhrdata.synth.addresses import old_tone_style
        from vhrmodel.extras import require_lite

        require_lite("lexicon", "snapping address fields to unit names (--lexicon)")

        unknown = sorted(set(names) - set(GROUPS))
        if unknown:
            raise ValueError(f"unknown lexicon groups {unknown}; known: {list(GROUPS)}")
        self.forms: dict[str, dict[str, str]] = {g: {} for g in GROUPS}  # group -> written form -> canonical
        for group, items in names.items():
            for item in items:
                form, canonical = (item, item) if isinstance(item, str) else item
                form = unicodedata.normalize("NFC", form)
                canonical = _name_key(unicodedata.normalize("NFC", canonical))
                for spelling in (form, old_tone_style(form)):
                    self.forms[group].setdefault(spelling, canonical)
        raw = _unit_prefixes() if prefixes is None else prefixes
        self.prefixes = {k.strip().casefold(): frozenset(v) for k, v in raw.items()}
        # Longest first, so "Thị xã" wins over "T." and "TP." over "TP".
        self._prefix_order = sorted(self.prefixes, key=len, reverse=True)
        self._choices: dict[frozenset[str], tuple[list[str], list[str], list[str]]] = {}

    @classmethod
    def from_gazetteer(cls, gazetteer=None) -> "Lexicon":
        """Every legacy and 2025 unit name of vietnamadminunits, and the provinces' spellings."""
        from vhrdata.synth.addresses import load_gazetteer

        g = gazetteer or load_gazetteer()
        provinces = []
        for p in g.provinces:
            provinces.append(p.name)
            provinces += [(v, p.name) for v in p.variants]
        return cls({"ward": sorted(g.ward_names()), "district": sorted(g.district_names()), "province": provinces})

    def _choice_lists(self, groups: frozenset[str]):
        cached = self._choices.get(groups)
        if cached is None:
            merged: dict[str, str] = {}
            for g in GROUPS:
                if g in groups:
                    for form, canonical in self.forms[g].items():
                        merged.setdefault(form, canonical)
            forms = list(merged)
            cached = self._choices[groups] = (forms, [f.casefold() for f in forms], [merged[f] for f in forms])
        return cached

    def match(self, name: str, groups: Iterable[str]) -> tuple[str, float, float] | None:
        """(best written form, its score, margin over the best other name) for `name`, or None.

        Args:
            name: the name as decoded (without its prefix).
            groups: the groups to search.
        """
        from rapidfuzz import fuzz, process

        forms, folded, canonical = self._choice_lists(frozenset(groups))
        if not forms:
            return None
        query = unicodedata.normalize("NFC", name).casefold()
        hits = process.extract(query, folded, scorer=fuzz.ratio, limit=32)
        if not hits:
            return None
        _, best_score, best_index = hits[0]
        second = 0.0
        for _, score, index in hits[1:]:
            if canonical[index] != canonical[best_index]:
                second = score
                break
        return forms[best_index], float(best_score), float(best_score - second)

    def split_prefix(self, field: str) -> tuple[str, str, frozenset[str]]:
        """(prefix as written with its space, name, groups) of a stripped field.

        Without a known prefix the whole field is the name and the groups are {"province"}.
        """
        folded = field.casefold()
        for key in self._prefix_order:
            if not folded.startswith(key):
                continue
            rest = field[len(key):]
            if key.endswith(".") or rest[:1].isspace():
                name = rest.lstrip()
                if name:
                    return field[: len(field) - len(name)], name, self.prefixes[key]
        return "", field, frozenset({"province"})


@functools.lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """`Lexicon.from_gazetteer()`, built once per process."""
    return Lexicon.from_gazetteer()


_FIELD_SPLIT = re.compile(r"(,)")


def _field_confidence(values: Sequence[float], mode: str) -> float:
    if not values:
        return 1.0
    return min(values) if mode == "min" else sum(values) / len(values)


def snap_fields(text: str, confidences: Sequence[float], lexicon: Lexicon,
                settings: SnapSettings | None = None) -> tuple[str, list[Snap]]:
    """Snap low-confidence, unambiguous comma-separated fields of a line to unit names.

    Args:
        text: one decoded line.
        confidences: one confidence per character of `text` (e.g. `[c.confidence for c in
            prediction.chars]`).
        lexicon: the names (`default_lexicon()` for vietnamadminunits).
        settings: thresholds; default `SnapSettings()`.

    Returns:
        (the line with snapped fields, the snaps made). Separators, spaces around fields and
        prefixes are kept exactly.

    Raises:
        ValueError: `confidences` does not have one value per character.
    """
    settings = settings or SnapSettings()
    if len(confidences) != len(text):
        raise ValueError(f"need one confidence per character: {len(confidences)} for {len(text)} characters")
    pieces = _FIELD_SPLIT.split(text)
    out, snaps, offset = [], [], 0
    for k, piece in enumerate(pieces):
        start = offset
        offset += len(piece)
        if k % 2 or not piece.strip():
            out.append(piece)
            continue
        lead = len(piece) - len(piece.lstrip())
        body = piece.strip()
        prefix, name, groups = lexicon.split_prefix(body)
        letters = sum(ch.isalpha() for ch in name)
        if letters < settings.min_chars or any(ch.isdigit() for ch in name):
            out.append(piece)
            continue
        name_start = start + lead + len(prefix)
        conf = _field_confidence(list(confidences[name_start : name_start + len(name)]), settings.confidence)
        if conf >= settings.max_confidence:
            out.append(piece)
            continue
        found = lexicon.match(name, groups)
        if found is None:
            out.append(piece)
            continue
        form, score, margin = found
        if name.isupper():
            form = form.upper()
        if score < settings.min_score or margin < settings.min_margin or form == name:
            out.append(piece)
            continue
        new = piece[:lead] + prefix + form + piece[lead + len(body):]
        snaps.append(Snap(k // 2, body, prefix + form, round(score, 2), round(margin, 2), round(conf, 5)))
        out.append(new)
    return "".join(out), snaps
