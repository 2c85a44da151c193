"""Synthetic Vietnamese address lines: real administrative units plus the project's own street lists.

The ward, district and province of a line are a real triple from **vietnamadminunits** (MIT): its
`dataset.db` (an SQLite file inside the installed package, read without network) holds the 10,040
wards of the 63-province structure used before 2025 (what Cinnamon and Kalapa labels use) and the
3,321 wards of the 2025 two-level structure (ward and province, no district). A ward is therefore
always written with the district and province it really belongs to.

What the package lacks comes from the word lists in `vhrdata/synth/wordlists/`: street names,
hamlet names, and the province regions and colloquial spellings ("TP.HCM", "BR-VT").

An address is written the way people fill in forms: an optional house part (number, alley, group,
hamlet), an optional street, the ward or commune, the district and the province, separated by
commas, with the usual spread of spellings and abbreviations ("Phường"/"P."/"P.3", "Quận"/"Q.",
"Thị xã"/"TX", "TP.HCM", "Tp"...), case variants and number styles. Everything is drawn from a
numpy Generator, so a line depends only on it.
"""

from __future__ import annotations

import functools
import importlib.util
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vhrdata.errors import SynthError
from vhrdata.synth.seeding import CORPUS_STREAM, TEXT_STREAM, line_rng
from vhrdata.text import unify_tone_placement

WORDLIST_DIR = Path(__file__).parent / "wordlists"

#: Labels outside this length range are redrawn (real form lines are about 25-70 characters).
MIN_CHARS, MAX_CHARS = 28, 72

DISTRICT_KINDS = ("quan", "huyen", "thixa", "thanhpho")
WARD_KINDS = ("phuong", "xa", "thitran", "dackhu")
REGIONS = ("north", "central", "south")

#: Share of lines written in the 2025 two-level structure (ward, province); the rest use the
#: legacy three levels (ward, district, province) of the labelled datasets.
MODERN_SHARE = 0.15

_DISTRICT_TYPES = {"Quận": "quan", "Huyện": "huyen", "Thị xã": "thixa", "Thành phố": "thanhpho"}
_WARD_TYPES = {"Phường": "phuong", "Xã": "xa", "Thị trấn": "thitran", "Đặc khu": "dackhu"}
_PROVINCE_TYPES = {"Thành phố": "city", "Tỉnh": "province"}


@dataclass(frozen=True)
class Province:
    """A province or centrally-run city (kind "city" or "province"), its region and other spellings."""

    name: str
    kind: str
    region: str = "north"
    variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class District:
    """A district of a province; kind is one of DISTRICT_KINDS."""

    name: str
    kind: str


@dataclass(frozen=True)
class Unit:
    """One real ward with its district (legacy) and province, as in vietnamadminunits.

    `*_full` are the database's own strings ("Phường Tân Định", "Quận 1", "Thành phố Hồ Chí Minh");
    the short names drop the type word ("Tân Định", "1", "Hồ Chí Minh"). For a 2025 unit the
    district fields are empty.
    """

    province: str
    ward: str
    ward_kind: str
    province_full: str
    ward_full: str
    district: str = ""
    district_kind: str = ""
    district_full: str = ""

    @property
    def legacy(self) -> bool:
        return bool(self.district_full)


@dataclass(frozen=True)
class Gazetteer:
    """Provinces (regions, spellings), real units from vietnamadminunits, and the own word lists."""

    provinces: tuple[Province, ...]
    legacy: dict[str, dict[str, tuple[Unit, ...]]]  # province -> district full name -> wards
    modern: dict[str, tuple[Unit, ...]]  # province -> wards (2025)
    hamlets: tuple[str, ...]
    streets: tuple[str, ...]

    @property
    def districts(self) -> dict[str, tuple[District, ...]]:
        """Legacy districts per province name."""
        return {
            p: tuple(District(ws[0].district, ws[0].district_kind) for ws in by_d.values())
            for p, by_d in self.legacy.items()
        }

    def ward_names(self) -> set[str]:
        """Every ward, commune and town name, legacy and 2025."""
        names = {u.ward for by_d in self.legacy.values() for wards in by_d.values() for u in wards}
        names.update(u.ward for wards in self.modern.values() for u in wards)
        return names

    def district_names(self) -> set[str]:
        """Every legacy district name."""
        return {wards[0].district for by_d in self.legacy.values() for wards in by_d.values()}

    def words(self) -> set[str]:
        """Every name used (units, streets, hamlets, province spellings)."""
        names = set(self.hamlets + self.streets) | self.ward_names() | self.district_names()
        for p in self.provinces:
            names.add(p.name)
            names.update(p.variants)
        return names


def _rows(name: str) -> list[str]:
    text = (WORDLIST_DIR / name).read_text(encoding="utf-8")
    return [
        unicodedata.normalize("NFC", line.strip())
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def admin_units_db() -> Path:
    """Path of vietnamadminunits' `dataset.db`, found without importing the package (no network).

    Raises:
        SynthError: when the package is not installed or its database is missing.
    """
    spec = importlib.util.find_spec("vietnamadminunits")
    if spec is None or not spec.submodule_search_locations:
        raise SynthError("vietnamadminunits is not installed; `pip install vietnamadminunits` (see setup.cfg).")
    db = Path(list(spec.submodule_search_locations)[0]) / "data" / "dataset.db"
    if not db.is_file():
        raise SynthError(f"vietnamadminunits has no database at {db}; reinstall the package.")
    return db


def _split_type(full: str, types: dict[str, str]) -> tuple[str, str]:
    """("Phường Tân Định", types) -> ("Tân Định", "phuong")."""
    full = unicodedata.normalize("NFC", " ".join(full.split()))
    for word, kind in types.items():
        if full[:len(word) + 1].casefold() == word.casefold() + " ":  # the db has "Thành Phố Bắc Kạn" too
            return full[len(word) + 1:], kind
    raise ValueError(f"unknown administrative type in {full!r}")


def _read_units(db: Path) -> tuple[list[Unit], list[Unit]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        legacy_rows = conn.execute(
            "SELECT province, district, ward FROM admin_units_legacy WHERE ward IS NOT NULL AND ward != '' "
            "ORDER BY provinceCode, districtCode, wardCode"
        ).fetchall()
        modern_rows = conn.execute(
            "SELECT province, ward FROM admin_units WHERE ward IS NOT NULL AND ward != '' "
            "ORDER BY provinceCode, wardCode"
        ).fetchall()
    legacy, modern = [], []
    for province_full, district_full, ward_full in legacy_rows:
        province, _ = _split_type(province_full, _PROVINCE_TYPES)
        district, district_kind = _split_type(district_full, _DISTRICT_TYPES)
        ward, ward_kind = _split_type(ward_full, _WARD_TYPES)
        legacy.append(Unit(province, ward, ward_kind, province_full, ward_full, district, district_kind, district_full))
    for province_full, ward_full in modern_rows:
        province, _ = _split_type(province_full, _PROVINCE_TYPES)
        ward, ward_kind = _split_type(ward_full, _WARD_TYPES)
        modern.append(Unit(province, ward, ward_kind, province_full, ward_full))
    return legacy, modern


@functools.lru_cache(maxsize=1)
def load_gazetteer() -> Gazetteer:
    """Read (once per process) the real units and the bundled word lists, and check they agree."""
    provinces = []
    for row in _rows("provinces.txt"):
        cols = row.split("\t")
        if len(cols) < 3 or cols[1] not in ("city", "province") or cols[2] not in REGIONS:
            raise ValueError(f"provinces.txt: expected name, kind, region. Received: {row!r}")
        variants = tuple(v for v in cols[3].split(";") if v) if len(cols) > 3 else ()
        provinces.append(Province(cols[0], cols[1], cols[2], variants))
    legacy_units, modern_units = _read_units(admin_units_db())
    legacy: dict[str, dict[str, list[Unit]]] = {p.name: {} for p in provinces}
    modern: dict[str, list[Unit]] = {}
    for u in legacy_units:
        if u.province not in legacy:
            raise ValueError(f"provinces.txt lacks the province {u.province!r} of vietnamadminunits")
        legacy[u.province].setdefault(u.district_full, []).append(u)
    for u in modern_units:
        if u.province not in legacy:
            raise ValueError(f"provinces.txt lacks the province {u.province!r} of vietnamadminunits")
        modern.setdefault(u.province, []).append(u)
    empty = [p for p, ds in legacy.items() if not ds]
    if empty:
        raise ValueError(f"vietnamadminunits has no ward for {empty}")
    return Gazetteer(
        provinces=tuple(provinces),
        legacy={p: {d: tuple(ws) for d, ws in by_d.items()} for p, by_d in legacy.items()},
        modern={p: tuple(ws) for p, ws in modern.items()},
        hamlets=tuple(_rows("hamlets.txt")),
        streets=tuple(_rows("streets.txt")),
    )


class _Draw:
    """Small helpers over a numpy Generator that read well in the grammar below."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def weighted(self, options: dict):
        keys = list(options)
        weights = np.fromiter(options.values(), dtype=float)
        return keys[int(self.rng.choice(len(keys), p=weights / weights.sum()))]

    def small_int(self, hi: int = 30) -> int:
        return int(self.rng.integers(1, hi + 1))

    def house_number(self) -> str:
        # Log-uniform: small numbers are far more common on real streets than large ones.
        n = str(int(np.exp(self.rng.uniform(0.0, np.log(1000.0)))))
        if self.chance(0.06) and len(n) == 1:
            n = "0" + n
        if self.chance(0.15):
            n += self.pick("ABCDEFGH")
        if self.chance(0.01):  # a double plot, "12+14"
            n += f"+{int(n.rstrip('ABCDEFGH')) + 2}"
        elif self.chance(0.22):
            n += f"/{self.small_int(60)}"
            if self.chance(0.3):
                n += self.pick("ABCDE")
            elif self.chance(0.12):
                n += f"/{self.small_int(20)}"
        return n


def _street(d: _Draw, g: Gazetteer) -> str:
    if d.chance(0.05):
        road = d.weighted({"Quốc lộ": 4, "Quốc Lộ": 2, "QL": 2, "Tỉnh lộ": 2, "Hương lộ": 1, "Tỉnh Lộ": 1})
        num = str(d.small_int(60)) + (d.pick("ABC") if d.chance(0.3) else "")
        return f"{road}{'' if road == 'QL' and d.chance(0.5) else ' '}{num}"
    return d.pick(g.streets)


# Local words differ by region: "hẻm" and "ấp" are southern, "ngõ" and "xóm" northern, "kiệt" central.
_URBAN_FORMS = {
    "north": {"so_duong": 10, "so": 14, "so_comma": 6, "bare": 22, "bare_duong": 4, "ngo": 16, "to": 9,
              "khupho": 2, "lo": 3, "none": 5},
    "central": {"so_duong": 10, "so": 14, "so_comma": 6, "bare": 26, "bare_duong": 4, "ngo": 3, "kiet": 8,
                "to": 9, "khupho": 3, "lo": 3, "none": 5},
    "south": {"so_duong": 10, "so": 14, "so_comma": 6, "bare": 28, "bare_duong": 4, "hem": 9, "to": 8,
              "khupho": 8, "lo": 3, "none": 5},
}
_RURAL_FORMS = {
    "north": {"thon": 30, "xom": 25, "ban": 6, "khu": 10, "so_thon": 10, "road": 6, "street": 4, "none": 7},
    "central": {"thon": 40, "xom": 4, "buon": 6, "khu": 10, "ap": 2, "so_thon": 10, "road": 6, "street": 5,
                "none": 7},
    "south": {"ap": 45, "thon": 3, "khu": 12, "so_thon": 14, "road": 6, "street": 6, "none": 7},
}
_UNIT_WORDS = {
    "thon": {"Thôn": 4, "thôn": 1},
    "ap": {"Ấp": 3, "ấp": 2},
    "xom": {"Xóm": 3, "xóm": 1},
    "ban": {"Bản": 3, "bản": 1},
    "buon": {"Buôn": 3, "buôn": 1},
}


def _urban_house(d: _Draw, g: Gazetteer, region: str) -> str | None:
    num, street = d.house_number(), _street(d, g)
    form = d.weighted(_URBAN_FORMS[region])
    so = d.weighted({"Số": 10, "số": 1, "Số nhà": 1, "SN": 0.5})
    if form == "so_duong":
        return f"{so} {num} {d.weighted({'đường': 3, 'Đường': 2, 'phố': 1, 'Phố': 1})} {street}"
    if form == "so":
        return f"{so} {num} {street}"
    if form == "so_comma":
        return f"{so} {num}, {street}"
    if form == "bare":
        return f"{num} {street}"
    if form == "bare_duong":
        return f"{num} đường {street}"
    if form == "ngo":
        lane = f"{d.weighted({'Ngõ': 4, 'ngõ': 3, 'Ngách': 1, 'ngách': 1})} {d.small_int(200)}"
        if d.chance(0.3):
            lane += f"/{d.small_int(60)}"
        if d.chance(0.5):
            return f"{so} {num}{d.pick([' ', ', '])}{lane} {street}"
        return f"{lane}{d.pick([' ', ', '])}{street}"
    if form == "hem":
        alley = f"{d.small_int(400)}" + (f"/{d.small_int(40)}" if d.chance(0.4) else "")
        if d.chance(0.5):
            return f"{num} {d.weighted({'hẻm': 3, 'Hẻm': 2, 'HXH': 1})} {alley} {street}"
        return f"{d.pick(['Hẻm', 'hẻm'])} {alley} {street}"
    if form == "kiet":
        if d.chance(0.5):
            return f"K{d.small_int(200)}/{d.small_int(40)} {street}"
        return f"{d.pick(['Kiệt', 'kiệt'])} {d.small_int(200)} {street}"
    if form == "to":
        parts = [f"{d.weighted({'Tổ': 4, 'tổ': 2, 'Tổ dân phố': 1})} {d.small_int(60)}"]
        if d.chance(0.5):
            parts.insert(0, f"{so} {num}")
        if region == "south" and d.chance(0.5):
            parts.append(f"{d.weighted({'KP': 2, 'Khu phố': 2, 'khu phố': 1})} {_block(d)}")
        return ", ".join(parts)
    if form == "khupho":
        kp = f"{d.weighted({'Khu phố': 3, 'KP': 2, 'khu phố': 1, 'Kp': 0.5})} {_block(d)}"
        return f"{so} {num}, {kp}" if d.chance(0.6) else kp
    if form == "lo":
        lo = f"{d.pick(['Lô', 'lô'])} {d.pick('ABCDEFGHJKLMNPQRSTUVWXZ')}{d.small_int(40)}"
        return f"{lo}{d.pick([' ', ', '])}{street}" if d.chance(0.6) else f"Nhà {num}, {lo}"
    return None


def _block(d: _Draw) -> str:
    return str(d.small_int(12)) + (d.pick("ABC") if d.chance(0.25) else "")


def _rural_house(d: _Draw, g: Gazetteer, region: str) -> str | None:
    form = d.weighted(_RURAL_FORMS[region])
    if form in _UNIT_WORDS or form == "so_thon":
        unit = form
        if form == "so_thon":
            unit = d.pick([u for u in _RURAL_FORMS[region] if u in ("thon", "ap", "xom")])
        word = d.weighted(_UNIT_WORDS[unit])
        name = d.pick(g.hamlets) if unit in ("ban", "buon") or d.chance(0.5) else str(d.small_int(20))
        place = f"{word} {name}"
        if form == "so_thon":
            return f"{d.weighted({'Số': 4, 'số': 1})} {d.house_number()}, {place}"
        return place
    if form == "khu":
        words = {"Khu": 3, "khu": 1, "Đội": 1, "Tổ": 2}
        if region == "south":
            words = {"Khóm": 3, "khóm": 1, "Tổ": 2, "Khu": 1}
        return f"{d.weighted(words)} {d.small_int(15)}"
    if form == "road":
        return f"{d.house_number()} {_street(d, g)}" if d.chance(0.5) else f"Số {d.house_number()} {_street(d, g)}"
    if form == "street":
        return f"{d.house_number()} {d.pick(g.streets)}"
    return None


#: Written forms of the unit types, with how often people write each (relative weights): the one
#: home of the abbreviations, used by the generator, the address corpus and `vhrmodel.lexicon`.
NUMBERED_WARD_PREFIXES = {"Phường ": 20, "phường ": 2, "P.": 8, "P. ": 3, "P": 3, "P ": 2, "F": 0.6, "F.": 0.3}
WARD_PREFIXES = {
    "phuong": {"Phường": 30, "phường": 3, "P.": 4, "P": 0.5, "PHƯỜNG": 0.3},
    "thitran": {"Thị trấn": 10, "Thị Trấn": 3, "TT": 3, "TT.": 2, "thị trấn": 1, "Tt": 0.5},
    "dackhu": {"Đặc khu": 5, "Đặc Khu": 1, "đặc khu": 1},
    "xa": {"Xã": 20, "xã": 4, "X.": 1, "XÃ": 0.2},
}
DISTRICT_PREFIXES = {
    "quan": {"Quận": 30, "quận": 3, "Q.": 4, "Q": 1.5, "Q. ": 1},  # bare "Q" only before a number
    "huyen": {"Huyện": 30, "huyện": 3, "H.": 3, "H": 0.3},
    "thixa": {"Thị xã": 12, "Thị Xã": 3, "Tx": 3, "TX": 3, "TX.": 1, "thị xã": 2, "Tx.": 1},
    "thanhpho": {"Thành phố": 10, "Thành Phố": 4, "TP": 6, "TP.": 2, "Tp": 2, "Tp.": 1, "thành phố": 1},
}
#: Province prefixes (each ends in the space or dot that joins it to the name; "" = no prefix).
PROVINCE_PREFIXES = {
    "city": {"": 5, "TP ": 2, "TP. ": 1, "Thành phố ": 1, "Tp ": 0.7, "Tp. ": 0.4},
    "province": {"": 20, "Tỉnh ": 2, "tỉnh ": 1, "T. ": 0.3},
}
_HCM_CITY_PREFIXES = {"": 1, "TP ": 10, "TP. ": 2, "Thành phố ": 2, "Tp ": 2, "Tp. ": 1}
#: Whole spellings of Ho Chi Minh City's "HCM" variant.
HCM_FORMS = {"TP HCM": 3, "TP.HCM": 4, "TP. HCM": 1, "Tp.HCM": 1.5, "Tp HCM": 1, "TPHCM": 1, "Tp.Hồ Chí Minh": 0.5}


def _ward(d: _Draw, unit: Unit) -> str:
    name, kind = unit.ward, unit.ward_kind
    if kind == "phuong":
        if name.isdigit():
            # Numbered wards: "Phường 3", "P.3", "P3", "Phường 03", southern "F3".
            n = int(name)
            form = d.weighted(NUMBERED_WARD_PREFIXES)
            num = f"{n:02d}" if d.chance(0.12) else str(n)
            return form + num
        prefix = d.weighted(WARD_PREFIXES["phuong"])
        if prefix.endswith(".") and d.chance(0.4):
            return prefix + name
        return f"{prefix} {name}"
    if kind in ("thitran", "dackhu"):
        return f"{d.weighted(WARD_PREFIXES[kind])} {name}"
    return f"{d.weighted(WARD_PREFIXES['xa'])} {name}"


def _district(d: _Draw, unit: Unit) -> str:
    name = unit.district
    prefixes = dict(DISTRICT_PREFIXES[unit.district_kind])
    if unit.district_kind == "quan" and not name.isdigit():
        prefixes["Q"] = 0
    prefix = d.weighted(prefixes)
    if name.isdigit():
        if d.chance(0.08):
            name = f"{int(name):02d}"
        if prefix in ("Q", "Q."):
            return prefix + name
    elif prefix.endswith(".") and d.chance(0.3):
        return prefix + name
    return f"{prefix.rstrip()} {name}"


def _province(d: _Draw, province: Province) -> str:
    name = province.name
    if province.variants and d.chance(0.2):
        name = d.pick(province.variants)
    if name == "HCM":
        return d.weighted(HCM_FORMS)
    if province.kind == "city":
        weights = _HCM_CITY_PREFIXES if province.name == "Hồ Chí Minh" else PROVINCE_PREFIXES["city"]
        return d.weighted(weights) + name
    return d.weighted(PROVINCE_PREFIXES["province"]) + name


@functools.lru_cache(maxsize=1)
def _province_weights() -> np.ndarray:
    # Big cities dominate real address data; the rest share the remaining weight equally.
    city_weight = {"Hồ Chí Minh": 0.2, "Hà Nội": 0.15, "Đà Nẵng": 0.05, "Hải Phòng": 0.04, "Cần Thơ": 0.03}
    provinces = load_gazetteer().provinces
    rest = 1.0 - sum(city_weight.values())
    n_others = sum(p.name not in city_weight for p in provinces)
    weights = np.array([city_weight.get(p.name, rest / n_others) for p in provinces])
    return weights / weights.sum()


def _pick_province(d: _Draw, g: Gazetteer, modern: bool) -> Province:
    while True:
        province = g.provinces[int(d.rng.choice(len(g.provinces), p=_province_weights()))]
        if not modern or province.name in g.modern:
            return province


def pick_unit(rng: np.random.Generator, g: Gazetteer | None = None) -> Unit:
    """A real unit: province by a city-heavy weighting, then a district and a ward of it, uniformly."""
    g = g or load_gazetteer()
    d = _Draw(rng)
    modern = d.chance(MODERN_SHARE)
    province = _pick_province(d, g, modern)
    if modern:
        return d.pick(g.modern[province.name])
    by_d = g.legacy[province.name]
    return d.pick(by_d[d.pick(sorted(by_d))])


def _compose(d: _Draw, g: Gazetteer) -> tuple[str, Unit]:
    unit = pick_unit(d.rng, g)
    province = next(p for p in g.provinces if p.name == unit.province)
    rural = unit.ward_kind in ("xa", "thitran") or unit.district_kind == "huyen"
    if rural:
        house = _rural_house(d, g, province.region)
    else:
        house = _urban_house(d, g, province.region)
    parts = [house] if house else []
    parts.append(_ward(d, unit))
    if unit.legacy:
        parts.append(_district(d, unit))
    parts.append(_province(d, province))
    if unit.legacy and d.chance(0.03):  # some writers leave the ward out
        del parts[-3]
    if house and d.chance(0.006):  # a remark after the house part
        parts[0] += f" ({d.pick(['cũ', 'mới', 'gần chợ', 'nhà trọ', 'sau trường'])})"
    sep = ", " if d.chance(0.95) else d.pick([",", " , ", " - ", ". "])
    prefix = d.pick(["ĐC: ", "Đ/c: ", "Địa chỉ: "]) if d.chance(0.006) else ""
    return prefix + sep.join(parts), unit


def _case(d: _Draw, text: str) -> str:
    r = d.rng.random()
    if r < 0.015:  # some people write forms in capitals
        return text.upper()
    if r < 0.03:  # or capitalise every word
        return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    return text


def generate_address_unit(rng: np.random.Generator) -> tuple[str, Unit]:
    """One synthetic address line (NFC) and the real unit it names, drawn from `rng`."""
    g = load_gazetteer()
    d = _Draw(rng)
    best = None
    for _ in range(8):
        text, unit = _compose(d, g)
        if MIN_CHARS <= len(text) <= MAX_CHARS:
            best = text, unit
            break
        if best is None or abs(len(text) - 56) < abs(len(best[0]) - 56):
            best = text, unit
    text, unit = best
    if d.chance(0.5):
        text = unify_tone_placement(text, "new")  # "hoà" beside "hòa": both occur in real labels
    return unicodedata.normalize("NFC", _case(d, text)), unit


def generate_address(rng: np.random.Generator) -> str:
    """One synthetic address line (NFC), drawn from `rng`.

    Args:
        rng: the random generator; the line depends only on its state.

    Returns:
        A label such as "Số 12 đường Trần Phú, Phường 3, Quận 5, TP Hồ Chí Minh".
    """
    return generate_address_unit(rng)[0]


def generate_texts(n: int, seed: int = 0) -> list[str]:
    """`n` synthetic address lines. Line i depends only on (seed, i), so shorter lists are prefixes.

    Args:
        n: how many lines.
        seed: a non-negative integer.

    Returns:
        The lines, NFC-normalised.

    Example:
        >>> texts = generate_texts(3, seed=0)
        >>> len(texts)
        3
    """
    if n < 0:
        raise ValueError(f"n must be >= 0. Received: n={n}")
    return [generate_address(line_rng(seed, TEXT_STREAM, i)) for i in range(n)]


def address_corpus(seed: int = 0, forms_per_unit: int = 2) -> Iterator[str]:
    """Text lines naming every administrative unit of vietnamadminunits, legacy and 2025, for an LM.

    Each unit (every legacy ward with its district and province, then every 2025 ward with its
    province) gives `forms_per_unit` lines "ward, [district,] province": the first in the
    database's full words ("Phường Tân Định, Quận 1, Thành phố Hồ Chí Minh"), the others in
    forms drawn like the synthetic addresses' (abbreviations such as "P.", "Q.", "TX",
    "TP.HCM", old tone placement, case variants). No house or street part: the corpus is the
    unit names only.

    Args:
        seed: a non-negative integer; unit i's lines depend only on (seed, i).
        forms_per_unit: lines per unit (>= 1).

    Yields:
        NFC lines, legacy units first, in database order.

    Raises:
        SynthError: vietnamadminunits is not installed.

    Example:
        >>> next(address_corpus())                             # doctest: +SKIP
        'Phường Phúc Xá, Quận Ba Đình, Thành phố Hà Nội'
    """
    if int(forms_per_unit) < 1:
        raise ValueError(f"forms_per_unit must be >= 1. Received: forms_per_unit={forms_per_unit}")
    g = load_gazetteer()
    provinces = {p.name: p for p in g.provinces}
    units = [u for by_d in g.legacy.values() for wards in by_d.values() for u in wards]
    units += [u for wards in g.modern.values() for u in wards]
    for i, unit in enumerate(units):
        d = _Draw(line_rng(seed, CORPUS_STREAM, i))
        full = [unit.ward_full] + ([unit.district_full] if unit.legacy else []) + [unit.province_full]
        yield unicodedata.normalize("NFC", ", ".join(full))
        for _ in range(int(forms_per_unit) - 1):
            parts = [_ward(d, unit)] + ([_district(d, unit)] if unit.legacy else [])
            parts.append(_province(d, provinces[unit.province]))
            text = ", ".join(parts)
            if d.chance(0.5):
                text = unify_tone_placement(text, "new")  # "hoà" beside "hòa": both occur in real labels
            yield unicodedata.normalize("NFC", _case(d, text))
