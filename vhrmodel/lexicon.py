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

**Hierarchy.** Units nest (province > district > ward), and an address names them from the
smallest to the largest, so fields are read from the end of the line. Once a field is known to
name a province (read as such, or snapped), the district fields before it are matched only
against that province's districts, and the ward fields against its wards (of the district, once
that is known too); an unprefixed field before a known province is matched against its districts
and wards. A field of a few dozen candidates has a clear best far more often than one of ten
thousand ward names, so more misread fields are snapped safely. A field that matches nothing in
the narrowed list is matched against the whole group as before. `SnapSettings.hierarchy` turns
this off; `tune-lm` decides on val.

The user's prefix is kept as written ("P.", "Phường", "Q.", "TX", "Tỉnh" ...; the forms of
`vhrdata.synth.addresses`) and decides which names are candidates: a ward prefix matches ward
names, a district prefix district names, a province prefix (or no prefix at all) province
names; "TP"/"Thành phố" matches districts and provinces. A name written in capitals is snapped
to capitals.

**Rescoring** (`SnapSettings.rescore`). Fuzzy string scores alone cannot tell "Hải Ninh" from
"Hải Dương" apart by how the line looked. With rescoring, the model judges: each unsure field's
nearest unit names (up to `RESCORE_CANDIDATES` of its group, or of the narrowed list, scoring at
least `RESCORE_MIN_SCORE`; for the last field, the province, every province name) are put in its
place one at a time, every such line is scored by a
`scorer` the caller supplies (`vhrmodel.predict.Recognizer` uses the CTC log-likelihood of the
line under the model plus the LM's weighted log-probability: the score beam search maximises),
and a field that names a unit fitting the fields read after it (with the hierarchy: inside the
province and district already chosen) gets `unit_bonus` more (natural log units): the prior that
an address names real units that nest, which a character n-gram cannot hold. Fields are read from
the end of the line keeping the `RESCORE_BEAM` best readings, so a province is chosen together
with the district and wards that fit it; the best reading wins, and a tie keeps the field as read.
The thresholds of string snapping (`min_score`, `min_margin`, `min_score_within`) are not used;
`max_confidence`, `min_chars`, `hierarchy` and `prefixes` are.

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
import math
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Mapping, Sequence

GROUPS = ("ward", "district", "province")
#: Street names (the generator's list, plus the training labels' streets beside an LM); only
#: rescoring with `SnapSettings.streets` reads them.
STREET = "street"
_ALL_GROUPS = (*GROUPS, STREET)
#: The rapidfuzz ratio a misread prefix needs against a written-out one (`SnapSettings.prefixes`).
PREFIX_SCORE = 80.0
CONFIDENCE_MODES = ("min", "mean")
#: How many (name, candidates) matches a lexicon remembers before it starts again.
MATCH_MEMO_SIZE = 100_000
#: Rescoring tries at most this many unit names per field ...
RESCORE_CANDIDATES = 8
#: ... that score at least this (rapidfuzz ratio, case-blind) against the field as read.
RESCORE_MIN_SCORE = 50.0

__all__ = ["GROUPS", "STREET", "PREFIX_SCORE", "RESCORE_BEAM", "RESCORE_CANDIDATES", "RESCORE_MIN_SCORE",
           "SnapSettings", "Snap", "Lexicon", "snap_fields", "default_lexicon", "split_street", "streets_in_labels",
           "lexicon_for", "repair_prefix", "split_unit_prefix", "units_in_labels"]


@dataclass(frozen=True)
class SnapSettings:
    """When `snap_fields` replaces a field (see the module docstring).

    Args:
        min_score: the best name's rapidfuzz ratio (0-100) must be at least this.
        min_margin: ... and exceed the second-best other name's by at least this.
        max_confidence: snap only when the field's confidence is below this (1.01: always).
        confidence: "min" or "mean" of the name part's per-character confidences.
        min_chars: name parts with fewer letters are never snapped.
        hierarchy: narrow the candidates by the province and district already read (see the
            module docstring). Settings stored before this existed read as False.
        prefixes: repair a misread unit prefix ("Huện" → "Huyện", "Thành phối" → "Thành phố") in
            the last three fields, when the field has no known prefix, its first one or two words
            score >= `PREFIX_SCORE` against a written-out prefix of at least 4 letters, and the
            model was unsure of them; the name is then matched as that prefix says. Settings
            stored before this existed read as False.
        min_score_within: the score needed in a narrowed list (a few dozen names, where a weak
            best match is still a clear one); the margin rule applies as everywhere.
        rescore: choose among the nearest unit names by the caller's line scorer instead of by
            string score and margin (see the module docstring); `snap_fields` then needs a
            `scorer`. Settings stored before this existed read as False.
        unit_bonus: (rescore) added to the score of a reading for each field that names a unit
            fitting the fields read after it, in natural log units; 0 lets the scorer alone decide.
        streets: (rescore) a field that reads as a house number and a street (`split_street`) is
            rescored against the street names too, each earning `street_bonus`.
        street_bonus: (rescore, streets) as `unit_bonus`, for a street name of the lexicon.
    """

    min_score: float = 80.0
    min_margin: float = 6.0
    max_confidence: float = 0.9
    confidence: str = "min"
    min_chars: int = 4
    hierarchy: bool = True
    min_score_within: float = 70.0
    prefixes: bool = True
    rescore: bool = False
    unit_bonus: float = 4.0
    streets: bool = False
    street_bonus: float = 2.0

    def __post_init__(self):
        if self.confidence not in CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_MODES}. Received: confidence={self.confidence!r}")
        if not (0 <= self.min_score <= 100 and 0 <= self.min_score_within <= 100) or self.min_margin < 0 \
                or self.min_chars < 1 or not self.unit_bonus >= 0 or not self.street_bonus >= 0:
            raise ValueError("min_score and min_score_within must be in [0, 100], min_margin >= 0, min_chars >= 1 and "
                             f"unit_bonus and street_bonus >= 0. Received: {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SnapSettings":
        """Settings from a dict (unknown keys are refused)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown snap settings {unknown}; known: {sorted(known)}")
        # Tuned before the hierarchy existed: keep the behaviour those values were chosen for.
        return cls(**{"hierarchy": False, "prefixes": False, "rescore": False, "streets": False, **dict(d)})


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
        tree: province -> district -> ward names, for the hierarchy (wards of a province without
            districts, the 2025 units, under the district ""); names as in `names`. None: no
            hierarchy.

    Raises:
        MissingDependencyError: rapidfuzz, which matches the names, is not installed.
    """

    def __init__(self, names: Mapping[str, Iterable[str | tuple[str, str]]],
                 prefixes: Mapping[str, Iterable[str]] | None = None,
                 tree: Mapping[str, Mapping[str, Iterable[str]]] | None = None):
        from vhrdata.text import unify_tone_placement
        from vhrmodel.extras import require_lite

        require_lite("lexicon", "snapping address fields to unit names (--lexicon)")

        unknown = sorted(set(names) - set(_ALL_GROUPS))
        if unknown:
            raise ValueError(f"unknown lexicon groups {unknown}; known: {list(_ALL_GROUPS)}")
        self.forms: dict[str, dict[str, str]] = {g: {} for g in _ALL_GROUPS}  # group -> written form -> canonical
        for group, items in names.items():
            for item in items:
                form, canonical = (item, item) if isinstance(item, str) else item
                form = unicodedata.normalize("NFC", form)
                canonical = _name_key(unicodedata.normalize("NFC", canonical))
                for spelling in (form, unify_tone_placement(form, "new")):
                    self.forms[group].setdefault(spelling, canonical)
        raw = _unit_prefixes() if prefixes is None else prefixes
        self.prefixes = {k.strip().casefold(): frozenset(v) for k, v in raw.items()}
        # Longest first, so "Thị xã" wins over "T." and "TP." over "TP".
        self._prefix_order = sorted(self.prefixes, key=len, reverse=True)
        self._choices: dict[Any, tuple[list[str], list[str], list[str]]] = {}
        # name key of any spelling -> canonical key, per group (what a field resolves to)
        self._keys = {g: {_name_key(form): canonical for form, canonical in self.forms[g].items()} for g in _ALL_GROUPS}
        # (province key, district key or "") -> {"district" | "ward": {written form: canonical}}
        self._within: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._within_cache: dict[Any, dict[str, str] | None] = {}
        self._matches: dict[Any, tuple[str, float, float] | None] = {}
        self._scope_keys: dict[int, tuple[Any, frozenset[str]]] = {}
        for province, districts in (tree or {}).items():
            pkey = self._keys["province"].get(_name_key(province), _name_key(province))
            for district, wards in districts.items():
                self._place(pkey, unicodedata.normalize("NFC", district), wards, to_names=False)

    def _place(self, pkey: str, district: str, wards: Iterable[str], *, to_names: bool) -> int:
        """Put a district ("" for none) and its wards, in both tone placements, under province
        `pkey` in the hierarchy (and among the flat names with `to_names`); returns how many of
        them were new. The one home of the tree, for the constructor and `add_units`."""
        from vhrdata.text import unify_tone_placement

        in_province = self._within.setdefault((pkey, ""), {"district": {}, "ward": {}})
        dkey = _name_key(district) if district else ""
        ward_scopes = [in_province]
        if dkey:
            ward_scopes.append(self._within.setdefault((pkey, dkey), {"district": {}, "ward": {}}))
        added = 0
        for group, names, scopes in (("district", [district] if district else [], [in_province]),
                                     ("ward", wards, ward_scopes)):
            for name in names:
                key = _name_key(name)
                canonical = self._keys[group].get(key, key)
                new = key not in self._keys[group]
                for spelling in (name, unify_tone_placement(name, "new")):
                    spelling = unicodedata.normalize("NFC", spelling)
                    if to_names:
                        self.forms[group].setdefault(spelling, canonical)
                        self._keys[group].setdefault(_name_key(spelling), canonical)
                    for scope in scopes:
                        new = new or spelling not in scope[group]
                        scope[group].setdefault(spelling, canonical)
                added += int(new)
        return added

    @classmethod
    def from_gazetteer(cls, gazetteer=None) -> "Lexicon":
        """Every legacy and 2025 unit name of vietnamadminunits, and the provinces' spellings."""
        from vhrdata.synth.addresses import load_gazetteer

        g = gazetteer or load_gazetteer()
        provinces = []
        for p in g.provinces:
            provinces.append(p.name)
            provinces += [(v, p.name) for v in p.variants]
        tree: dict[str, dict[str, list[str]]] = {}
        for province, by_district in g.legacy.items():
            for wards in by_district.values():
                tree.setdefault(province, {}).setdefault(wards[0].district, []).extend(u.ward for u in wards)
        for province, wards in g.modern.items():
            tree.setdefault(province, {}).setdefault("", []).extend(u.ward for u in wards)
        return cls({"ward": sorted(g.ward_names()), "district": sorted(g.district_names()), "province": provinces,
                    STREET: sorted(set(g.streets))}, tree=tree)

    @property
    def has_hierarchy(self) -> bool:
        return bool(self._within)

    def resolve(self, name: str, group: str) -> str | None:
        """The canonical key of the `group` unit that `name` spells exactly (case and punctuation
        aside, either tone placement), or None."""
        return self._keys[group].get(_name_key(unicodedata.normalize("NFC", name)))

    def within(self, province: str | None, district: str | None, groups: Iterable[str]) -> dict[str, str] | None:
        """{written form: canonical} of the `groups` units inside a resolved province (and district),
        or None when nothing narrows them."""
        if province is None:
            return None
        groups = frozenset(groups)
        cache_key = (province, district, groups)
        if cache_key in self._within_cache:
            return self._within_cache[cache_key]
        found: dict[str, str] = {}
        if "district" in groups:
            found.update((self._within.get((province, "")) or {}).get("district", {}))
        if "ward" in groups:
            scope = self._within.get((province, district or "")) or self._within.get((province, "")) or {}
            for form, canonical in scope.get("ward", {}).items():
                found.setdefault(form, canonical)
        self._within_cache[cache_key] = found or None
        return found or None

    def _choice_lists(self, groups: frozenset[str], candidates: Mapping[str, str] | None = None):
        # Keyed by the candidates' identity; the entry keeps them alive, so no other object can
        # take their id while the entry (and the match memo keyed the same way) exists.
        key = (groups, id(candidates))
        entry = self._choices.get(key)
        cached = entry[1] if entry is not None and entry[0] is candidates else None
        if cached is None:
            merged: dict[str, str] = {}
            if candidates is not None:
                merged = dict(candidates)
            else:
                for g in _ALL_GROUPS:
                    if g in groups:
                        for form, canonical in self.forms[g].items():
                            merged.setdefault(form, canonical)
            forms = list(merged)
            cached = (forms, [f.casefold() for f in forms], [merged[f] for f in forms])
            self._choices[key] = (candidates, cached)
        return cached

    def match(self, name: str, groups: Iterable[str],
              candidates: Mapping[str, str] | None = None) -> tuple[str, float, float] | None:
        """(best written form, its score, margin over the best other name) for `name`, or None.

        Args:
            name: the name as decoded (without its prefix).
            groups: the groups to search.
            candidates: {written form: canonical} to search instead of the whole groups (`within`).
        """
        groups = frozenset(groups)
        self._choice_lists(groups, candidates)  # pins the candidates' id for the memo key
        memo = (name, groups, id(candidates))
        if memo not in self._matches:
            if len(self._matches) >= MATCH_MEMO_SIZE:  # a server reads names without end
                self._matches.clear()
            self._matches[memo] = self._match(name, groups, candidates)
        return self._matches[memo]

    def _match(self, name: str, groups: frozenset[str], candidates: Mapping[str, str] | None):
        from rapidfuzz import fuzz, process

        forms, folded, canonical = self._choice_lists(groups, candidates)
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

    def nearest(self, name: str, groups: Iterable[str], candidates: Mapping[str, str] | None = None,
                limit: int = RESCORE_CANDIDATES, min_score: float = RESCORE_MIN_SCORE) -> list[tuple[str, float]]:
        """Up to `limit` (written form, score) nearest to `name`, best first, scoring at least
        `min_score`; one form per name (its best-scoring spelling). Arguments as in `match`."""
        from rapidfuzz import fuzz, process

        forms, folded, canonical = self._choice_lists(frozenset(groups), candidates)
        if not forms:
            return []
        query = unicodedata.normalize("NFC", name).casefold()
        out: list[tuple[str, float]] = []
        seen: set[str] = set()
        for _, score, index in process.extract(query, folded, scorer=fuzz.ratio, limit=4 * limit,
                                               score_cutoff=min_score):
            if canonical[index] not in seen:
                seen.add(canonical[index])
                out.append((forms[index], float(score)))
                if len(out) == limit:
                    break
        return out

    def names_unit(self, name: str, groups: Iterable[str], candidates: Mapping[str, str] | None = None) -> bool:
        """Whether `name` spells a unit of `groups` (of `candidates` when given), case and
        punctuation aside, in either tone placement."""
        key = _name_key(unicodedata.normalize("NFC", name))
        if candidates is not None:
            entry = self._scope_keys.get(id(candidates))
            if entry is None or entry[0] is not candidates:  # the entry pins the object, as in _choice_lists
                entry = self._scope_keys[id(candidates)] = (candidates, frozenset(_name_key(f) for f in candidates))
            return key in entry[1]
        return any(key in self._keys[g] for g in frozenset(groups))

    def split_prefix(self, field: str) -> tuple[str, str, frozenset[str]]:
        """(prefix as written with its space, name, groups) of a stripped field.

        Without a known prefix the whole field is the name and the groups are {"province"}.
        """
        return split_unit_prefix(field, self.prefixes, self._prefix_order)

    def add_streets(self, names: Iterable[str]) -> int:
        """Add street names (e.g. `streets_in_labels` of the training labels); returns how many were new."""
        added = 0
        for name in names:
            form = unicodedata.normalize("NFC", str(name)).strip()
            key = _name_key(form)
            if not key:
                continue
            added += int(key not in self._keys[STREET])
            canonical = self._keys[STREET].setdefault(key, key)
            self.forms[STREET].setdefault(form, canonical)
        self._choices.clear()
        self._matches.clear()
        return added

    def add_units(self, units: Iterable[Sequence[str]]) -> int:
        """Add (province, district, ward) units, e.g. `units_in_labels` of the training labels, to
        the names and the hierarchy; returns how many were new. A unit whose province is not
        known is skipped; an empty district or ward adds only what is given."""
        added = 0
        for unit in units:
            province, district, ward = (unicodedata.normalize("NFC", str(x or "")).strip() for x in unit)
            pkey = self.resolve(province, "province") if province else None
            if pkey is not None:
                added += self._place(pkey, district, [ward] if ward else [], to_names=True)
        self._choices.clear()
        self._within_cache.clear()
        self._matches.clear()
        self._scope_keys.clear()
        return added


@functools.lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """`Lexicon.from_gazetteer()`, built once per process."""
    return Lexicon.from_gazetteer()


@functools.lru_cache(maxsize=4)
def _lexicon_with(units: tuple[tuple[str, str, str], ...], streets: tuple[str, ...] = ()) -> Lexicon:
    lexicon = Lexicon.from_gazetteer()
    lexicon.add_units(units)
    lexicon.add_streets(streets)
    return lexicon


def lexicon_for(lm=None) -> Lexicon:
    """The lexicon to snap with beside an LM: the vietnamadminunits names, plus the units of the
    LM's training labels (its meta "units", written by `vhrmodel.lm.build_char_lm`) when it has
    them: the names the real lines use, including units merged away since (the gazetteer holds
    today's units). Built once per set of units."""
    meta = getattr(lm, "meta", None) or {}
    units, streets = meta.get("units") or [], meta.get("streets") or []
    if not units and not streets:
        return default_lexicon()
    return _lexicon_with(tuple(tuple(str(x) for x in u) for u in units), tuple(str(x) for x in streets))


def split_unit_prefix(field: str, prefixes: Mapping[str, frozenset[str]] | None = None,
                      order: Sequence[str] | None = None) -> tuple[str, str, frozenset[str]]:
    """(prefix as written with its space, name, groups) of a stripped field, with the written
    prefixes of `vhrdata.synth.addresses` (or `prefixes`, and `order`, the longest first).

    Without a known prefix the whole field is the name and the groups are {"province"}.

    Example:
        >>> split_unit_prefix("Q. Hoàn Kiếm")
        ('Q. ', 'Hoàn Kiếm', frozenset({'district'}))
    """
    if prefixes is None:
        prefixes = _default_prefixes()
    if order is None:
        order = sorted(prefixes, key=len, reverse=True)
    folded = field.casefold()
    for key in order:
        if not folded.startswith(key):
            continue
        rest = field[len(key):]
        if key.endswith(".") or rest[:1].isspace():
            name = rest.lstrip()
            if name:
                return field[: len(field) - len(name)], name, prefixes[key]
    return "", field, frozenset({"province"})


@functools.lru_cache(maxsize=1)
def _default_prefixes() -> dict[str, frozenset[str]]:
    return {k.strip().casefold(): frozenset(v) for k, v in _unit_prefixes().items()}


@functools.lru_cache(maxsize=1)
def _written_prefixes() -> dict[str, str]:
    """Casefolded written-out prefix (4 letters or more, no dot) -> its most common written form."""
    from vhrdata.synth.addresses import DISTRICT_PREFIXES, PROVINCE_PREFIXES, WARD_PREFIXES

    best: dict[str, tuple[float, str]] = {}
    for table in [*WARD_PREFIXES.values(), *DISTRICT_PREFIXES.values(), *PROVINCE_PREFIXES.values()]:
        for form, weight in table.items():
            form = form.strip()
            if "." in form or sum(ch.isalpha() for ch in form) < 4:
                continue
            key = form.casefold()
            if key not in best or weight > best[key][0]:
                best[key] = (weight, form)
    return {key: form for key, (_, form) in best.items()}


def repair_prefix(field: str) -> tuple[str, str] | None:
    """(repaired prefix with its space, the rest) of a stripped field whose first one or two words
    are a misread written-out prefix, or None. Two-word prefixes are tried first.

    Example:
        >>> repair_prefix("Thành phối Nha Trang")
        ('Thành phố ', 'Nha Trang')
        >>> repair_prefix("Đường Láng") is None
        True
    """
    from rapidfuzz import fuzz

    words = field.split()
    for k in (2, 1):
        if len(words) <= k:
            continue
        head = " ".join(words[:k])
        if sum(ch.isalpha() for ch in head) < 3:
            continue
        best, score = None, 0.0
        for key, form in _written_prefixes().items():
            if len(key.split()) != k:
                continue
            r = fuzz.ratio(head.casefold(), key)
            if r > score:
                best, score = form, r
        if best is not None and score >= PREFIX_SCORE:
            if head[:1].islower():
                best = best.lower()
            rest = re.match(r"\s*(?:\S+\s+){%d}(.*)\Z" % k, field, re.S).group(1)
            return best + " ", rest
    return None


def units_in_labels(texts: Iterable[str]) -> list[tuple[str, str, str]]:
    """The (province, district, ward) units that address lines name, read from their last three
    comma-separated fields by their prefixes: the last field is the province, a district-prefixed
    field before it the district, a ward-prefixed field before that the ward. Numbered units
    ("Phường 12") are kept; a line whose fields do not fit is skipped. Sorted, each once.

    Example:
        >>> units_in_labels(["Số 9, Phường Phước Tân, Thành phố Nha Trang, Khánh Hoà"])
        [('Khánh Hoà', 'Nha Trang', 'Phước Tân')]
    """
    found: set[tuple[str, str, str]] = set()
    for text in texts:
        fields = [f.strip() for f in unicodedata.normalize("NFC", str(text)).split(",") if f.strip()]
        if len(fields) < 2:
            continue
        _, province, groups = split_unit_prefix(fields[-1])
        if "province" not in groups:
            continue
        _, district, groups = split_unit_prefix(fields[-2])
        if "district" not in groups:
            continue
        ward = ""
        if len(fields) >= 3:
            _, name, groups = split_unit_prefix(fields[-3])
            if groups == frozenset({"ward"}):
                ward = name
        found.add((province, district, ward))
    return sorted(found)


_FIELD_SPLIT = re.compile(r"(,)")
#: A house number (after an optional "Số"/"Số nhà"), an optional "đường"/"phố", then a street name: a
#: letter first, no digits.
_STREET_FIELD = re.compile(r"^(?P<head>(?:số\s+(?:nhà\s+)?)?\d[\w/\-]*\s+(?:(?:đường|phố)\s+)?)"
                           r"(?P<name>[^\W\d_]\D*)$", re.IGNORECASE)


def split_street(field: str) -> tuple[str, str] | None:
    """(house number part with its space, street name) of a stripped field that reads as a house
    number and a street, or None.

    Example:
        >>> split_street("Số 12 đường Lê Lợi")
        ('Số 12 đường ', 'Lê Lợi')
        >>> split_street("Phường 12") is None
        True
    """
    m = _STREET_FIELD.match(field)
    if m is None or sum(ch.isalpha() for ch in m.group("name")) < 2:
        return None
    return m.group("head"), m.group("name")


def streets_in_labels(texts: Iterable[str]) -> list[str]:
    """The street names of address lines whose first field is a house number and a street
    (`split_street`), sorted, each once.

    Example:
        >>> streets_in_labels(["Số 9 Lê Lợi, Phường 2, Quận 1, TP Hồ Chí Minh", "Thôn 2, Xã An Bình, Hà Nội"])
        ['Lê Lợi']
    """
    found: set[str] = set()
    for text in texts:
        first = unicodedata.normalize("NFC", str(text)).split(",")[0].strip()
        parts = split_street(first)
        if parts is not None:
            found.add(parts[1].strip())
    return sorted(found)


def _field_confidence(values: Sequence[float], mode: str) -> float:
    if not values:
        return 1.0
    return min(values) if mode == "min" else sum(values) / len(values)


def snap_fields(text: str, confidences: Sequence[float], lexicon: Lexicon,
                settings: SnapSettings | None = None,
                scorer: Callable[[Sequence[str]], Sequence[float]] | None = None) -> tuple[str, list[Snap]]:
    """Snap low-confidence, unambiguous comma-separated fields of a line to unit names.

    Args:
        text: one decoded line.
        confidences: one confidence per character of `text` (e.g. `[c.confidence for c in
            prediction.chars]`).
        lexicon: the names (`default_lexicon()` for vietnamadminunits).
        settings: thresholds; default `SnapSettings()`.
        scorer: (`settings.rescore`) whole lines -> one score each, higher is better (e.g. the
            model's log-likelihood of the line); -inf rules a line out.

    Returns:
        (the line with snapped fields, the snaps made). Separators, spaces around fields and
        prefixes are kept exactly.

    Raises:
        ValueError: `confidences` does not have one value per character, or `settings.rescore`
            without a `scorer`.
    """
    settings = settings or SnapSettings()
    if settings.rescore and scorer is None:
        raise ValueError("rescoring (SnapSettings.rescore) needs a scorer of whole lines")
    if len(confidences) != len(text):
        raise ValueError(f"need one confidence per character: {len(confidences)} for {len(text)} characters")
    pieces = _FIELD_SPLIT.split(text)
    starts, offset = [], 0
    for piece in pieces:
        starts.append(offset)
        offset += len(piece)
    fields_at = [k for k in range(0, len(pieces), 2) if pieces[k].strip()]
    parsed = [_parse_field(k, pieces[k], starts[k], k in fields_at[-3:], k == fields_at[-1], confidences, lexicon,
                           settings) for k in reversed(fields_at)]
    hierarchy = settings.hierarchy and lexicon.has_hierarchy
    if settings.rescore:
        return _rescore_fields(pieces, parsed, lexicon, settings, hierarchy, scorer)
    province = district = None  # canonical keys, once read (from the end of the line)
    out, snaps = list(pieces), []
    for f in parsed:
        groups = f.groups_in(province, hierarchy)
        candidates = lexicon.within(province, district, groups) if hierarchy else None
        final = f.name
        snap = _snap_one(f.name, groups, candidates, lexicon, settings, f.name_confs)
        if snap is not None or f.repaired:
            final, score, margin, conf = snap or (f.name, 100.0, 0.0, f.prefix_conf)
            out[f.k] = f.write(final)
            snaps.append(Snap(f.k // 2, f.body, f.prefix + final, round(score, 2), round(margin, 2), round(conf, 5)))
        if hierarchy:
            province, district = _read_context(lexicon, final, groups, province, district)
    snaps.sort(key=lambda sn: sn.field)
    return "".join(out), snaps


def _unit_shaped(name: str, settings: SnapSettings) -> bool:
    """Whether a name part is one the lexicon handles: `min_chars` letters or more, no digit
    (numbered wards, house numbers and streets with numbers are never touched)."""
    return sum(ch.isalpha() for ch in name) >= settings.min_chars and not any(ch.isdigit() for ch in name)


def _unsure_confidence(name: str, confidences: Sequence[float], settings: SnapSettings) -> float | None:
    """The confidence of a name part the lexicon may change (unit-shaped, read below
    `max_confidence`), else None: the gate of string snapping and rescoring alike."""
    if not _unit_shaped(name, settings):
        return None
    conf = _field_confidence(list(confidences), settings.confidence)
    return conf if conf < settings.max_confidence else None


@dataclass(frozen=True)
class _Field:
    """One comma-separated field of a line, as `snap_fields` reads it (the same in every path)."""

    k: int  # index among the split pieces (fields and commas)
    piece: str
    lead: int  # spaces before the body
    body: str
    prefix: str  # the prefix to write (repaired when `repaired`)
    name: str
    groups: frozenset[str]
    name_confs: tuple[float, ...]
    prefix_conf: float
    repaired: bool
    last: bool

    def groups_in(self, province: str | None, hierarchy: bool) -> frozenset[str]:
        """The groups to search once `province` is known: an unprefixed field before the province
        names one of its districts or wards."""
        if hierarchy and not self.prefix and not self.last and province is not None:
            return frozenset({"district", "ward"})
        return self.groups

    def write(self, name: str) -> str:
        """The piece with its prefix and `name`, spaces around it as they were."""
        return self.piece[: self.lead] + self.prefix + name + self.piece[self.lead + len(self.body):]


def _parse_field(k: int, piece: str, start: int, repairable: bool, last: bool, confidences: Sequence[float],
                 lexicon: Lexicon, settings: SnapSettings) -> _Field:
    lead = len(piece) - len(piece.lstrip())
    body = piece.strip()
    prefix, name, groups = lexicon.split_prefix(body)
    written = prefix  # the prefix as the line has it
    if settings.prefixes and not prefix and repairable:
        repaired = repair_prefix(body)
        if repaired is not None:
            head = body[: len(body) - len(repaired[1])]
            conf = _field_confidence(list(confidences[start + lead: start + lead + len(head)]), settings.confidence)
            if conf < settings.max_confidence:
                written, name = head, repaired[1]
                prefix, _, groups = lexicon.split_prefix(repaired[0] + name)
    if settings.rescore and settings.streets and not prefix:  # streets are read by rescoring only
        street = split_street(body)
        if street is not None:
            written, prefix, name, groups = street[0], street[0], street[1], frozenset({STREET})
    name_at = start + lead + len(written)
    return _Field(k, piece, lead, body, prefix, name, groups, tuple(confidences[name_at: name_at + len(name)]),
                  _field_confidence(list(confidences[start + lead: name_at]), settings.confidence),
                  written != prefix, last)


#: Rescoring keeps this many readings of the fields read so far (from the end of the line). With
#: every province a candidate for the last field, 4 pruned the right province before the fields
#: that fit it were read (run I, val: 4.02 % at 4, 3.94 % at 8, 3.94 % at 16; RESULTS.md).
RESCORE_BEAM = 8


@dataclass
class _Reading:
    pieces: list[str]
    province: str | None
    district: str | None
    snaps: list[Snap]
    bonus: float  # what the fields read as names earned (`unit_bonus`, `street_bonus`)
    raw: float | None  # the scorer's score of the line (None: not scored yet)


def _rescore_fields(pieces: list[str], parsed: Sequence[_Field], lexicon: Lexicon, settings: SnapSettings,
                    hierarchy: bool, scorer: Callable[[Sequence[str]], Sequence[float]]) -> tuple[str, list[Snap]]:
    """`snap_fields` with `settings.rescore`: a beam of `RESCORE_BEAM` readings over the fields, from
    the end of the line, so a province is chosen together with the district and wards that fit it."""
    text = "".join(pieces)
    readings = [_Reading(list(pieces), None, None, [], 0.0, None)]
    for f in parsed:
        options: list[tuple[_Reading, str, float, float, frozenset[str], float]] = []
        bonus = settings.street_bonus if f.groups == {STREET} else settings.unit_bonus
        shaped = _unit_shaped(f.name, settings)  # the same for every reading and candidate of the field
        for r in readings:
            groups = f.groups_in(r.province, hierarchy)
            scope = lexicon.within(r.province, r.district, groups) if hierarchy else None

            def fits(name: str) -> float:  # names a unit that fits the fields read after it (or a street)
                return bonus if shaped and lexicon.names_unit(name, groups, scope) else 0.0

            names, conf = _rescore_candidates(f, groups, scope, lexicon, settings) or ([], f.prefix_conf)
            options.append((r, f.name, 100.0, fits(f.name), groups, conf))
            options += [(r, form, score, fits(form), groups, conf) for form, score in names]
        lines, texts = [], []
        for r, name, *_ in options:
            new = list(r.pieces)
            new[f.k] = f.write(name)
            lines.append(new)
            texts.append("".join(new))
        # A line this field leaves as it was keeps its score: the scorer sees only new lines.
        scores = [r.raw if name == f.name and not f.repaired else None for r, name, *_ in options]
        todo = [i for i, v in enumerate(scores) if v is None]
        if todo:
            fresh = [float(v) for v in scorer([texts[i] for i in todo])]
            if len(fresh) != len(todo):
                raise ValueError(f"the scorer gave {len(fresh)} scores for {len(todo)} lines")
            for i, v in zip(todo, fresh):
                scores[i] = v
        as_read: dict[int, float] = {}
        for (r, name, _, earned, _, _), score in zip(options, scores):
            if name == f.name:
                as_read.setdefault(id(r), score + r.bonus + earned)
        ranked, seen = [], set()
        for i in sorted(range(len(options)), key=lambda i: (-(scores[i] + options[i][0].bonus + options[i][3]), i)):
            r, name, fuzzy, earned, groups, conf = options[i]
            if texts[i] in seen or not math.isfinite(scores[i]):
                continue
            seen.add(texts[i])
            total = scores[i] + r.bonus + earned
            snaps = list(r.snaps)
            if name != f.name or f.repaired:
                gain = total - as_read.get(id(r), total)
                snaps.append(Snap(f.k // 2, f.body, f.prefix + name, round(fuzzy, 2), round(gain, 2), round(conf, 5)))
            province, district = (_read_context(lexicon, name, groups, r.province, r.district) if hierarchy
                                  else (None, None))
            ranked.append(_Reading(lines[i], province, district, snaps, r.bonus + earned, scores[i]))
            if len(ranked) == RESCORE_BEAM:
                break
        if not ranked:  # the scorer ruled every reading out: leave the line as it is
            return text, []
        readings = ranked
    best = readings[0]
    best.snaps.sort(key=lambda sn: sn.field)
    return "".join(best.pieces), best.snaps


def _rescore_candidates(f: _Field, groups: frozenset[str], scope: Mapping[str, str] | None, lexicon: Lexicon,
                        settings: SnapSettings) -> tuple[list[tuple[str, float]], float] | None:
    """(nearest unit names other than the field as read, the field's confidence) when the field is
    rescored, else None."""
    conf = _unsure_confidence(f.name, f.name_confs, settings)
    if conf is None:
        return None
    if f.last and groups == {"province"} and not scope:
        # The province field: a few dozen names, so the model judges every one of them, not only
        # those spelled like the field as read ("Đắc Tre" for "Phú Thọ" shares too few letters).
        near = lexicon.nearest(f.name, groups, limit=len(lexicon.forms["province"]), min_score=0.0)
    else:
        near = lexicon.nearest(f.name, groups, scope) if scope else []
        if not near:  # nothing in the narrowed list: the whole group, as string snapping does
            near = lexicon.nearest(f.name, groups)
    if f.name.isupper():
        near = [(form.upper(), score) for form, score in near]
    near = [(form, score) for form, score in near if form != f.name]
    return (near, conf) if near else None


def _snap_one(name: str, groups: frozenset[str], candidates: Mapping[str, str] | None, lexicon: Lexicon,
              settings: SnapSettings, confidences: Sequence[float]) -> tuple[str, float, float, float] | None:
    """(new name, score, margin, confidence) when the field's name part is snapped, else None."""
    conf = _unsure_confidence(name, confidences, settings)
    if conf is None:
        return None
    for scope, min_score in (((candidates, settings.min_score_within), (None, settings.min_score)) if candidates
                             else ((None, settings.min_score),)):
        found = lexicon.match(name, groups, scope)
        if found is None:
            continue
        form, score, margin = found
        if name.isupper():
            form = form.upper()
        if score >= min_score and margin >= settings.min_margin:
            return (form, score, margin, conf) if form != name else None
    return None


def _read_context(lexicon: Lexicon, name: str, groups: frozenset[str], province: str | None,
                  district: str | None) -> tuple[str | None, str | None]:
    """The (province, district) context after a field whose name part reads `name`: the last
    field names the province; a district field of that province names the district."""
    if province is None:
        return (lexicon.resolve(name, "province"), None) if "province" in groups else (None, None)
    if district is None and "district" in groups:
        key = _name_key(unicodedata.normalize("NFC", name))
        districts = lexicon.within(province, None, {"district"}) or {}
        found = next((canonical for form, canonical in districts.items() if _name_key(form) == key), None)
        if found is not None:
            return province, found
    return province, district
