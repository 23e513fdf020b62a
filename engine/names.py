"""Names of SPEC section 1, as pure functions: user ids, paths, keys, event ids, patterns, hashes.

Invariants:
- a user id is exactly 52 chars of the z-base-32 alphabet whose decoding is 32 bytes with the last 4 bits zero;
  `encode_user(decode_user(u)) == u` for every valid `u`;
- a checked path starts with '/', has no empty, '.' or '..' segment, no NUL, and is at most 1024 UTF-8 bytes;
- an event id's seq part is 13 upper-case Crockford base32 chars, which sort like the number.
Everything here raises InvalidName (a 400) for bad input and never touches I/O.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import blake3

from .errors import InvalidName

ZBASE32_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
_ZBASE32_INDEX = {c: i for i, c in enumerate(ZBASE32_ALPHABET)}
CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_INDEX = {c: i for i, c in enumerate(CROCKFORD_ALPHABET)}

USER_ID_LENGTH = 52
SEQ_TEXT_LENGTH = 13
MAX_SEQ = (1 << 64) - 1
MAX_PATH_BYTES = 1024
PUBLIC_PREFIX = "/pub/"
_DECIMAL = re.compile(r"[0-9]+\Z")


# ---- z-base-32 (bits most significant first, as pubky) ----

def zbase32_encode(data: bytes) -> str:
    """Encode bytes to z-base-32; the final partial group is padded with zero bits."""
    value = int.from_bytes(data, "big")
    nbits = len(data) * 8
    nchars = -(-nbits // 5)
    value <<= nchars * 5 - nbits
    out = []
    for shift in range((nchars - 1) * 5, -1, -5):
        out.append(ZBASE32_ALPHABET[(value >> shift) & 31])
    return "".join(out)


def zbase32_decode(text: str, nbytes: int) -> bytes:
    """Decode z-base-32 text of exactly the length for `nbytes`; the padding bits must be zero."""
    nchars = -(-nbytes * 8 // 5)
    if len(text) != nchars:
        raise InvalidName(f"z-base-32 text must be {nchars} characters")
    value = 0
    for c in text:
        i = _ZBASE32_INDEX.get(c)
        if i is None:
            raise InvalidName(f"{c!r} is not a z-base-32 character")
        value = (value << 5) | i
    pad = nchars * 5 - nbytes * 8
    if value & ((1 << pad) - 1):
        raise InvalidName("z-base-32 padding bits are not zero")
    return (value >> pad).to_bytes(nbytes, "big")


def encode_user(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise InvalidName("an ed25519 public key is 32 bytes")
    return zbase32_encode(public_key)


_VALID_USERS: dict[str, bytes] = {}  # user id -> public key, for ids already checked (bounded below)
_VALID_USERS_MAX = 100_000


def decode_user(user: str) -> bytes:
    """The 32-byte public key of a user id; InvalidName if it is not exactly a valid id.

    Valid ids are remembered (up to _VALID_USERS_MAX, then the memory starts over), because every request
    names a user and decoding z-base-32 in Python costs ~10 µs; invalid ids are never remembered.
    """
    key = _VALID_USERS.get(user)  # type: ignore[arg-type]
    if key is not None:
        return key
    if not isinstance(user, str) or len(user) != USER_ID_LENGTH:
        raise InvalidName(f"invalid user id {user!r}: expected {USER_ID_LENGTH} z-base-32 characters")
    try:
        key = zbase32_decode(user, 32)
    except InvalidName as exc:
        raise InvalidName(f"invalid user id {user!r}: {exc.message}") from None
    if len(_VALID_USERS) >= _VALID_USERS_MAX:
        _VALID_USERS.clear()
    _VALID_USERS[user] = key
    return key


# ---- paths and keys ----

def check_path(path: str) -> str:
    """Return `path` if SPEC 1 allows it (file or directory), else raise InvalidName."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidName(f"invalid path {path!r}: must start with '/'")
    if "\x00" in path:
        raise InvalidName("invalid path: contains NUL")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidName("invalid path: not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise InvalidName(f"invalid path: {size} bytes, at most {MAX_PATH_BYTES}")
    segments = path[1:].split("/")
    if path.endswith("/"):
        segments.pop()  # a directory: the trailing '/' leaves one empty segment that is allowed
    if path == "/":
        return path
    for seg in segments:
        if seg == "":
            raise InvalidName(f"invalid path {path!r}: empty segment")
        if seg in (".", ".."):
            raise InvalidName(f"invalid path {path!r}: '{seg}' segment")
    return path


def is_directory(path: str) -> bool:
    return path.endswith("/")


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIX)


def percent_decode(raw: str | bytes) -> str:
    """Percent-decode a request target path into text; invalid UTF-8 is InvalidName."""
    if isinstance(raw, str):
        raw = raw.encode("latin-1", "strict") if raw.isascii() else raw.encode("utf-8")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidName("path is not valid UTF-8 after percent-decoding") from None


def split_key(target: str) -> tuple[str, str]:
    """Split a decoded `/<user><path>` (or `<user><path>`) into a checked (user, path)."""
    text = target[1:] if target.startswith("/") else target
    user, sep, rest = text.partition("/")
    decode_user(user)
    if not sep:
        raise InvalidName(f"invalid key {target!r}: no path after the user id")
    return user, check_path("/" + rest)


_URI_ESCAPES = {c: f"%{c:02X}" for c in [*range(0x20), 0x7F, ord("%")]}
# the characters some line splitters take for a line break (U+0085 NEL, U+2028, U+2029), as their UTF-8 bytes
_URI_ESCAPES.update({0x85: "%C2%85", 0x2028: "%E2%80%A8", 0x2029: "%E2%80%A9"})


def key_uri(user: str, path: str) -> str:
    """`pubky://<user><path>`, with control characters, '%' and the line separators U+0085, U+2028, U+2029
    percent-encoded so that a URI is always one line of the line-based formats (listings, /events/,
    /events-stream), whatever splits the lines, and decodes back to the path."""
    return f"pubky://{user}{path.translate(_URI_ESCAPES)}"


# ---- seqs and event ids ----

_CROCKFORD_PAIRS = [a + b for a in CROCKFORD_ALPHABET for b in CROCKFORD_ALPHABET]  # 10 bits -> 2 chars


def encode_seq(seq: int) -> str:
    """13 upper-case Crockford base32 chars; sorts like the number (65 bits: 1 char + six 10-bit pairs)."""
    if not 0 <= seq <= MAX_SEQ:
        raise InvalidName(f"seq {seq} out of range")
    p = _CROCKFORD_PAIRS
    return (CROCKFORD_ALPHABET[seq >> 60] + p[(seq >> 50) & 1023] + p[(seq >> 40) & 1023] + p[(seq >> 30) & 1023]
            + p[(seq >> 20) & 1023] + p[(seq >> 10) & 1023] + p[seq & 1023])


def event_id(seq: int, user: str) -> str:
    return f"{encode_seq(seq)}.{user}"


def parse_resume_point(text: str) -> int:
    """Read an event id, a bare 13-char seq, or a decimal seq (SPEC 1); InvalidName otherwise."""
    if not isinstance(text, str):
        raise InvalidName("resume point must be text")
    head, dot, suffix = text.partition(".")
    if dot:
        decode_user(suffix)
    if len(head) == SEQ_TEXT_LENGTH:
        value = 0
        for c in head:
            i = _CROCKFORD_INDEX.get(c)
            if i is None:
                raise InvalidName(f"invalid event id {text!r}: {c!r} is not Crockford base32")
            value = (value << 5) | i
        if value > MAX_SEQ:
            raise InvalidName(f"invalid event id {text!r}: seq beyond 2^64-1")
        return value
    if _DECIMAL.match(head):
        if len(head.lstrip("0")) > 20:  # past 2^64-1 (and past what int() converts in Python 3.11)
            raise InvalidName(f"invalid seq {text[:40]!r}...: beyond 2^64-1")
        value = int(head)
        if value > MAX_SEQ:
            raise InvalidName(f"invalid seq {text!r}: beyond 2^64-1")
        return value
    raise InvalidName(f"invalid event id or seq {text!r}")


# ---- hashes ----

_last_digest: list = [None, b""]  # [the bytes object last hashed (kept alive, so its identity is not reused), digest]


def content_digest(data: bytes) -> bytes:
    """BLAKE3-256 of the bytes. A signed write hashes its body twice (the signed text, then the log record), so
    the digest of the last `bytes` object hashed is remembered, by identity: bytes are immutable."""
    last = _last_digest
    if last[0] is data:
        return last[1]
    digest = blake3.blake3(data).digest()
    if type(data) is bytes:
        last[0], last[1] = data, digest
    return digest


def remember_digest(data: bytes, digest: bytes) -> None:
    """Tell content_digest that `digest` is data's (a caller that hashed it earlier and is about to hash it
    again, after other hashing in between: engine/http/offload.py before running a deferred handler)."""
    if type(data) is bytes:
        _last_digest[0], _last_digest[1] = data, digest


def encode_content_hash(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def content_hash(data: bytes) -> str:
    """BLAKE3-256 of the bytes, standard base64 with padding (pubky's content_hash / ETag)."""
    return encode_content_hash(content_digest(data))


def item_name_from_digest(digest: bytes) -> str:
    return zbase32_encode(digest)


def item_name(data: bytes) -> str:
    """The append-only collection name of an item: z-base-32 of its BLAKE3 digest."""
    return zbase32_encode(content_digest(data))


def is_item_name(segment: str) -> bool:
    if len(segment) != USER_ID_LENGTH:
        return False
    try:
        zbase32_decode(segment, 32)
    except InvalidName:
        return False
    return True


# ---- subscription patterns (SPEC 3.1) ----

@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed subscription pattern.

    user None means every user; `prefix` True means every path starting with `path` (which then ends
    with '/'), False means exactly `path`.
    """

    text: str
    user: str | None
    path: str
    prefix: bool


def parse_pattern(text: str) -> Pattern:
    """Parse one SPEC 3.1 pattern; InvalidName naming the pattern otherwise."""

    def bad(why: str) -> InvalidName:
        return InvalidName(f"invalid pattern {text!r}: {why}")

    if not isinstance(text, str) or text == "":
        raise bad("empty")
    if text == "*":
        return Pattern(text, None, "/", True)
    user_part, sep, rest = text.partition("/")
    if not sep:
        raise bad("expected <user>/<path>, */<path> or *")
    if user_part == "*":
        user = None
    else:
        if "*" in user_part:
            raise bad("'*' only as the whole user part or the last path segment")
        try:
            decode_user(user_part)
        except InvalidName:
            raise bad("the user part is not a valid user id") from None
        user = user_part
    path = "/" + rest
    prefix = False
    if path.endswith("/*"):
        path = path[:-1]
        prefix = True
    if "*" in path:
        raise bad("'*' only as the whole user part or the last path segment")
    try:
        check_path(path)
    except InvalidName as exc:
        raise bad(exc.message) from None
    return Pattern(text, user, path, prefix)
