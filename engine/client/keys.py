"""Key files for the client and CLI: make, write and load ed25519 signing keys.

A key file holds the 32-byte ed25519 seed, either as 64 hex characters (what `homestream keygen` writes, with a
trailing newline) or as the 32 raw bytes; `load_key` accepts both. Invariants: a key file is created with mode
0600 and never silently overwritten (`force=True` replaces it atomically); the user id printed for a key is
`engine.names.encode_user` of its public key, so it is the id the server checks signatures against.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

import nacl.signing

from ..names import encode_user
from .errors import KeyFileError

KEY_ENV = "HOMESTREAM_KEY"
SEED_BYTES = 32
_HEX = set(string.hexdigits)


def generate_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(secrets.token_bytes(SEED_BYTES))


def user_id(key: nacl.signing.SigningKey) -> str:
    """The z-base-32 user id of a signing key."""
    return encode_user(bytes(key.verify_key))


def seed_from_bytes(data: bytes, where: str = "key") -> bytes:
    """The 32-byte seed in a key file's contents: 64 hex chars (whitespace around allowed) or 32 raw bytes."""
    text = data.strip()
    if len(text) == 2 * SEED_BYTES and all(chr(c) in _HEX for c in text):
        return bytes.fromhex(text.decode("ascii"))
    if len(data) == SEED_BYTES:
        return bytes(data)
    raise KeyFileError(f"{where}: not a key file (expected 64 hex characters or 32 raw bytes, got {len(data)} bytes)")


def load_key(path: str | os.PathLike | None = None) -> nacl.signing.SigningKey:
    """Load the key at `path`, or at $HOMESTREAM_KEY when `path` is None; KeyFileError when there is none."""
    if path is None:
        path = os.environ.get(KEY_ENV) or None
        if path is None:
            raise KeyFileError(f"no key: pass --key FILE or set {KEY_ENV}")
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{p}: no such key file (make one with `homestream keygen --out {p}`)") from None
    except IsADirectoryError:
        raise KeyFileError(f"{p}: is a directory, not a key file") from None
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read key file: {exc.strerror or exc}") from None
    return nacl.signing.SigningKey(seed_from_bytes(data, str(p)))


def encode_key_file(key: nacl.signing.SigningKey, fmt: str = "hex") -> bytes:
    seed = bytes(key)
    if fmt == "hex":
        return seed.hex().encode("ascii") + b"\n"
    if fmt == "raw":
        return seed
    raise ValueError(f"key format must be hex or raw, not {fmt!r}")


def write_key(path: str | os.PathLike, key: nacl.signing.SigningKey, *, fmt: str = "hex",
              force: bool = False) -> Path:
    """Write `key` to `path` with mode 0600. Refuses an existing file unless `force` (then replaced atomically)."""
    p = Path(path).expanduser()
    data = encode_key_file(key, fmt)
    if not force:
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{p}: already exists (use --force to replace it)") from None
        except OSError as exc:
            raise KeyFileError(f"{p}: cannot create key file: {exc.strerror or exc}") from None
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return p
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise KeyFileError(f"{p}: cannot write key file: {exc.strerror or exc}") from None
    return p
