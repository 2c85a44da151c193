"""Quarantine: every rejected item is written down with a reason code and a readable message."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable

QUARANTINE_FILE = "quarantine.jsonl"


class Reason(str, Enum):
    """Why an item was quarantined. The value is the code written to quarantine.jsonl."""

    MISSING_IMAGE = "missing_image"
    EMPTY_FILE = "empty_file"
    TRUNCATED_IMAGE = "truncated_image"
    UNDECODABLE_IMAGE = "undecodable_image"
    NOT_AN_IMAGE = "not_an_image"
    IMAGE_TOO_SMALL = "image_too_small"
    IMAGE_TOO_LARGE = "image_too_large"
    EMPTY_LABEL = "empty_label"
    NO_TAB = "no_tab"
    MALFORMED_LINE = "malformed_line"
    DUPLICATE_ID = "duplicate_id"
    DUPLICATE_IMAGE = "duplicate_image"
    BAD_ENCODING = "bad_encoding"
    UNREADABLE_FILE = "unreadable_file"
    CTC_INFEASIBLE = "ctc_infeasible"
    PATH_OUTSIDE_DATASET = "path_outside_dataset"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    FILE_TOO_LARGE = "file_too_large"
    LABEL_TOO_LONG = "label_too_long"
    BUILD_FAILED = "build_failed"


@dataclass
class QuarantineItem:
    """One rejected item."""

    reason: str
    message: str
    id: str | None = None
    path: str | None = None
    origin: str | None = None
    raw_text: str | None = None
    duplicate_of: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reason"] = str(Reason(self.reason).value)
        return d


def write_quarantine(items: Iterable[QuarantineItem], path: str | Path) -> Counter:
    """Write items as JSON lines (atomically) and return the count per reason."""
    path = Path(path)
    counts: Counter = Counter()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for item in items:
            d = item.to_dict()
            counts[d["reason"]] += 1
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return counts


def read_quarantine(path: str | Path) -> list[dict]:
    """Read quarantine.jsonl (a missing file means nothing was quarantined)."""
    path = Path(path)
    if path.is_dir():
        path = path / QUARANTINE_FILE
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
