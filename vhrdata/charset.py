"""Mapping between label text and integer CTC targets.

Index 0 is the CTC blank; characters get ids 1..N in the order given.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np

from vhrdata.errors import UnknownCharacterError

BLANK = 0


class Charset:
    """An ordered set of characters with 1-based ids (0 is the CTC blank).

    Args:
        chars: the characters, in id order. Duplicates are an error.

    Example:
        >>> cs = Charset("abc")
        >>> cs.encode("cab").tolist()
        [3, 1, 2]
        >>> cs.decode([3, 0, 1])
        'ca'
    """

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if any(len(c) != 1 for c in chars):
            raise ValueError(f"Charset entries must be single characters. Received: {chars!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("Charset has duplicate characters. Received: " + "".join(chars))
        self.chars = "".join(chars)
        self._ids = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "Charset":
        """The sorted set of characters found in `texts`."""
        seen: set[str] = set()
        for t in texts:
            seen.update(t)
        return cls(sorted(seen))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Charset) and other.chars == self.chars

    def __repr__(self) -> str:
        return f"Charset({self.chars!r})"

    @property
    def num_classes(self) -> int:
        """Characters plus the blank."""
        return len(self.chars) + 1

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` that are not in the charset, sorted."""
        return sorted({c for c in text if c not in self._ids})

    def encode(self, text: str) -> np.ndarray:
        """Encode `text` as int32 ids. Raises UnknownCharacterError naming unknown characters."""
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int32, count=len(text))
        except KeyError:
            missing = self.unknown(text)
            raise UnknownCharacterError(
                f"label {text!r} has characters outside the charset: {''.join(missing)!r} "
                f"({', '.join(f'U+{ord(c):04X}' for c in missing)})"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text; the blank (0) and out-of-range ids are skipped."""
        n = len(self.chars)
        return "".join(self.chars[i - 1] for i in (int(x) for x in ids) if 0 < i <= n)

    def to_json(self) -> str:
        return json.dumps(self.chars, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "Charset":
        return cls(json.loads(s))
