"""Text spaces that accept any unicode string (Gymnasium's `Text` needs a charset; ours uses it for sampling only)."""

from __future__ import annotations

import string
from typing import Any

from gymnasium import spaces

SAMPLE_CHARSET = string.ascii_lowercase + string.digits + " .,?!'"


class UnicodeText(spaces.Text):
    """Any `str` of `min_length..max_length` characters; `sample()` draws from a small printable charset."""

    def __init__(self, max_length: int, min_length: int = 0, seed: int | None = None) -> None:
        super().__init__(max_length=max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"
