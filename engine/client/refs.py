"""Turning what a user types into (user, path) and request targets, before any request is made.

Accepted forms: `/pub/a.json` (the client's own user, from its key), `<user>/pub/a.json`, `pubky://<user>/pub/a.json`.
Invariants: every returned path passed engine.names.check_path (so the server cannot answer 400 for the name);
the URL target percent-encodes the path while the signed path is the decoded one, as SPEC 2 signs it.
"""

from __future__ import annotations

from urllib.parse import quote

from ..errors import InvalidName
from ..names import check_path, decode_user, parse_pattern, parse_resume_point
from .errors import BadReference

URI_SCHEME = "pubky://"
# RFC 3986 pchar minus '+' (kept encoded so that no decoder can mistake it for a space)
_SAFE = "/:@!$&'()*,;=~"


def resolve(ref: str, own_user: str | None, *, directory: bool = False) -> tuple[str, str]:
    """(user, path) of a reference; `directory` makes sure the path ends with '/', else it must not."""
    if not isinstance(ref, str) or not ref:
        raise BadReference("empty key: expected /pub/..., <user>/pub/... or pubky://<user>/pub/...")
    text = ref[len(URI_SCHEME):] if ref.startswith(URI_SCHEME) else ref
    if text.startswith("/"):
        if own_user is None:
            raise BadReference(f"{ref!r} is a bare path: it needs a key (--key FILE or HOMESTREAM_KEY) to name "
                               f"its user, or write it as <user>{text}")
        user, path = own_user, text
    else:
        user, sep, rest = text.partition("/")
        try:
            decode_user(user)
        except InvalidName as exc:
            raise BadReference(f"{ref!r}: {exc.message}") from None
        path = "/" + rest
    if directory and not path.endswith("/"):
        path += "/"
    if not directory and path.endswith("/"):
        raise BadReference(f"{ref!r} names a directory; give a file path (no trailing '/')")
    try:
        check_path(path)
    except InvalidName as exc:
        raise BadReference(f"{ref!r}: {exc.message}") from None
    return user, path


def target(user: str, path: str) -> str:
    """The request target (percent-encoded) for a key."""
    return "/" + user + quote(path, safe=_SAFE)


def signed_path(user: str, path: str) -> str:
    """The path a signature covers: the decoded target path."""
    return "/" + user + path


def uri(user: str, path: str) -> str:
    return URI_SCHEME + user + path


def check_patterns(patterns: list[str] | tuple[str, ...] | str) -> list[str]:
    """Patterns checked as the server would (SPEC 3.1); BadReference names the first bad one."""
    if isinstance(patterns, str):
        patterns = [patterns]
    out = []
    for p in patterns:
        if isinstance(p, str) and p.startswith(URI_SCHEME):
            p = p[len(URI_SCHEME):]
        try:
            parse_pattern(p)
        except InvalidName as exc:
            raise BadReference(exc.message) from None
        out.append(p)
    if not out:
        raise BadReference("at least one pattern is needed")
    return out


def check_resume_point(value: str | int | None) -> tuple[int, str | None] | None:
    """(seq, id or None) of a resume point given as an event id, a bare 13-char seq, a decimal seq or an int."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadReference(f"invalid resume point {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise BadReference(f"invalid resume point {value}: a seq is not negative")
        return value, None
    try:
        seq = parse_resume_point(str(value).strip())
    except InvalidName as exc:
        raise BadReference(exc.message) from None
    text = str(value).strip()
    return seq, (text if "." in text else None)
