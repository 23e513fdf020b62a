"""Strict JSON out: the one encoder for every JSON text the server writes (answers, errors, SSE data).

What must stay true:
- the output is strict JSON (RFC 8259): NaN and infinities are never written -- `dumps` raises ValueError, so a
  value that would need them is refused where it is made (a write is answered 400) instead of reaching a client;
- U+2028, U+2029 (line and paragraph separators) and U+0085 (next line) never appear raw: they are written as
  `\\u2028`, `\\u2029`, `\\u0085`, which every JSON parser reads back as the same character, and which no line
  splitter (JavaScript before ES2019, Python's str.splitlines, log tools) can take for a line break;
- compact (`,` and `:`), raw UTF-8 for every other character, as before.
`escape_separators` applies the same escaping to a JSON text that is already valid (a stored value sent
inline): in valid JSON these characters can only sit inside a string literal, so the swap keeps its meaning.
"""

from __future__ import annotations

import json
from typing import Any

SEPARATORS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}
_TABLE = str.maketrans(SEPARATORS)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def has_separator(text: str) -> bool:
    return "\u2028" in text or "\u2029" in text or "\x85" in text


def escape_separators(text: str) -> str:
    """A valid JSON text with U+2028, U+2029 and U+0085 written as escapes (same value)."""
    if text.isascii() or not has_separator(text):
        return text
    return text.translate(_TABLE)


def dumps(value: Any) -> str:
    """Compact strict JSON; ValueError for NaN or an infinity anywhere in `value`."""
    return escape_separators(_encode(value))


def dumps_bytes(value: Any) -> bytes:
    return dumps(value).encode("utf-8")
