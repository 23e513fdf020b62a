"""The user table: who signed up, who is disabled, which signup tokens are outstanding. Crash-safe on disk.

Kept in `<data>/users.journal` beside the log: one line per change, `<crc32 of the JSON, 8 hex> <JSON>\\n`,
appended and fsynced before the change takes effect in memory (so an acknowledged signup, token or disable
survives `kill -9` and power loss). At open the journal is replayed up to the first line that is torn or fails
its CRC; that tail (an unfinished append) is cut off. When the journal holds many more lines than the state it
describes, it is rewritten as a snapshot: temp file, fsync, rename over, fsync the directory, so a crash at any
point leaves either the old or the new file whole.

Tokens are never stored, only their SHA-256 (a copy of the data directory does not leak usable tokens). A token
is outstanding from `issue` until it is used (by one signup) or revoked; anything else is unknown.

Invariants: the in-memory state is always the replay of the journal's valid lines; a write that fails (OSError)
changes nothing in memory and is raised to the caller; nothing here runs unless a change is asked for, so a
server that never uses signups never creates the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zlib
from pathlib import Path

FILE_NAME = "users.journal"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A signup token: 32 random bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def encode_line(entry: dict) -> bytes:
    text = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(text), text)


def decode_line(line: bytes) -> dict | None:
    """The entry of a whole line (with its newline), None when torn or corrupt."""
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    text = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(text):
            return None
        entry = json.loads(text)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("op"), str) else None


class UserTable:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.signed_up: set[str] = set()
        self.disabled: set[str] = set()
        self.tokens: set[str] = set()  # digests of outstanding tokens
        self.lines = 0
        self.dropped_bytes = 0  # torn tail cut at open

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "UserTable":
        table = cls(directory)
        table._load()
        return table

    # ---- state ----

    def _apply(self, entry: dict) -> None:
        op, user, digest = entry["op"], entry.get("user"), entry.get("digest")
        if op == "signup":
            self.signed_up.add(user)
        elif op == "forget":
            self.signed_up.discard(user)
        elif op == "disable":
            self.disabled.add(user)
        elif op == "enable":
            self.disabled.discard(user)
        elif op == "token":
            self.tokens.add(digest)
        elif op == "revoke":
            self.tokens.discard(digest)
        elif op == "use":  # a token spent by a signup: one line, so the two cannot be separated by a crash
            self.tokens.discard(digest)
            self.signed_up.add(user)

    def _snapshot(self) -> list[dict]:
        return ([{"op": "signup", "user": u} for u in sorted(self.signed_up)]
                + [{"op": "disable", "user": u} for u in sorted(self.disabled)]
                + [{"op": "token", "digest": d} for d in sorted(self.tokens)])

    # ---- changes (each durable before it is visible) ----

    def issue_token(self) -> str:
        token = new_token()
        self._commit({"op": "token", "digest": token_digest(token)})
        return token

    def revoke_token(self, token: str) -> bool:
        """True when the token was outstanding."""
        digest = token_digest(token)
        if digest not in self.tokens:
            return False
        self._commit({"op": "revoke", "digest": digest})
        return True

    def use_token(self, token: str, user: str) -> bool:
        """Spend an outstanding token on `user`'s signup; False (nothing changed) when unknown, used or revoked."""
        digest = token_digest(token)
        if digest not in self.tokens:
            return False
        self._commit({"op": "use", "digest": digest, "user": user})
        return True

    def sign_up(self, user: str) -> None:
        if user not in self.signed_up:
            self._commit({"op": "signup", "user": user})

    def forget(self, user: str) -> None:
        if user in self.signed_up:
            self._commit({"op": "forget", "user": user})

    def set_disabled(self, user: str, disabled: bool) -> None:
        if disabled != (user in self.disabled):
            self._commit({"op": "disable" if disabled else "enable", "user": user})

    # ---- disk ----

    def _commit(self, entry: dict) -> None:
        line = encode_line(entry)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.directory)
        self.lines += 1
        self._apply(entry)

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        good = 0
        for line in data.splitlines(keepends=True):
            entry = decode_line(line)
            if entry is None:
                break
            self._apply(entry)
            good += len(line)
            self.lines += 1
        if good < len(data):
            self.dropped_bytes = len(data) - good
            with open(self.path, "r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        live = len(self.signed_up) + len(self.disabled) + len(self.tokens)
        if self.lines > 2 * live + 64:
            self.compact()

    def compact(self) -> None:
        """Rewrite the journal as the state it describes (temp + fsync + rename + fsync dir)."""
        entries = self._snapshot()
        tmp = self.path.with_name(FILE_NAME + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(b"".join(encode_line(e) for e in entries))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.directory)
        self.lines = len(entries)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
