"""RFC 8785 JSON Canonicalization Scheme (JCS): the text /set stores for a JSON value (SPEC 4.1).

What must stay true: the output is compact (no whitespace), object members sorted by the UTF-16 code units of
their names, strings escaped minimally (only '"', '\\' and control characters, short forms where JSON has them,
else \\u00xx lower case), everything else as raw UTF-8, and numbers as ECMAScript's Number.prototype.toString
of the IEEE-754 double (integers beyond 2^53 are rounded to a double first, as JCS requires). Values JCS cannot
represent (NaN, infinities, lone surrogates, duplicate member names) are refused with ValueError.
"""

from __future__ import annotations

import json
import math
from typing import Any

_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _SHORT.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            raise ValueError("a lone surrogate cannot be canonical JSON")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def number(x: float | int) -> str:
    """ECMAScript Number.prototype.toString of x as a double."""
    if isinstance(x, bool):
        raise TypeError("bool is not a number")
    if isinstance(x, int) and abs(x) < (1 << 53):
        return str(x)
    try:
        f = float(x)
    except OverflowError:
        raise ValueError("number out of the range of a double") from None
    if math.isnan(f) or math.isinf(f):
        raise ValueError("NaN and infinities are not JSON")
    if f == 0:
        return "0"
    sign = "-" if f < 0 else ""
    r = repr(abs(f))  # shortest round-trip digits
    mant, _, exp = r.partition("e")
    exp_n = int(exp) if exp else 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    if fp == "0":
        fp = ""
    digits = (ip + fp).lstrip("0")
    # position of the decimal point relative to the start of `digits`
    point = len(ip.lstrip("0")) + exp_n if ip.strip("0") else exp_n - (len(fp) - len(fp.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    n = point  # value = 0.digits * 10^n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    es = f"+{e}" if e >= 0 else str(e)
    if k == 1:
        return f"{sign}{digits}e{es}"
    return f"{sign}{digits[0]}.{digits[1:]}e{es}"


def canonical(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError("object member names are strings")
        names = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_string(k) + ":" + canonical(value[k]) for k in names) + "}"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def canonical_bytes(value: Any) -> bytes:
    return canonical(value).encode("utf-8")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member name {k!r}")
        out[k] = v
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def loads_strict(text: str | bytes) -> Any:
    """json.loads refusing NaN/Infinity and duplicate member names (I-JSON, as JCS expects)."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
