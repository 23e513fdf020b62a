"""The user table: who signed up, who is disabled, which signup tokens are outstanding. Crash-safe on disk.

Kept in `<data>/users.journal` beside the log: one line per change, `<crc32 of the JSON, 8 hex> <JSON>\\n`,
appended and fsynced before the change takes effect in memory (so an acknowledged signup, token or disable
survives `kill -9` and power loss). At open the journal is replayed up to the first line that is torn or fails
its CRC; that tail (an unfinished append) is cut off. When the journal holds many more lines than the state it
describes, it is rewritten as a snapshot: temp file, fsync, rename over, fsync the directory, so a crash at any
point leaves either the old or the new file whole.

Tokens are never stored, only their SHA-256 (a copy of the data directory does not leak usable tokens). A token
is outstanding from `issue` until it is used (by one signup) or revoked; anything else is unknown.

Several processes (serve --workers) may share the table: changes are decided and appended under a file lock,
and each process catches up with the others' lines (see the "disk" section below).

Invariants: the in-memory state is always the replay of a prefix of the journal's valid lines; a write that
fails (OSError) changes nothing in memory and is raised to the caller; nothing is created on disk until a
change is asked for, so a server that never uses signups never creates the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
import zlib
from pathlib import Path

FILE_NAME = "users.journal"
LOCK_NAME = "users.lock"
REFRESH_SECONDS = 1.0  # how stale another process's change may be when nothing forces a catch-up


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A signup token: 32 random bytes in hex (64 characters)."""
    return secrets.token_hex(32)  # never starts with "-", so `homestream admin revoke TOKEN` can take it


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
        self._ino = 0  # the journal file we have read, and how far (whole lines)
        self._offset = 0
        self._next_check = 0.0

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
        self._change(lambda: {"op": "token", "digest": token_digest(token)})
        return token

    def revoke_token(self, token: str) -> bool:
        """True when the token was outstanding."""
        digest = token_digest(token)
        return self._change(lambda: {"op": "revoke", "digest": digest} if digest in self.tokens else None)

    def use_token(self, token: str, user: str) -> bool:
        """Spend an outstanding token on `user`'s signup; False (nothing changed) when unknown, used or revoked."""
        digest = token_digest(token)
        return self._change(lambda: {"op": "use", "digest": digest, "user": user} if digest in self.tokens
                            else None)

    def sign_up(self, user: str) -> None:
        self._change(lambda: {"op": "signup", "user": user} if user not in self.signed_up else None)

    def forget(self, user: str) -> None:
        self._change(lambda: {"op": "forget", "user": user} if user in self.signed_up else None)

    def set_disabled(self, user: str, disabled: bool) -> None:
        op = "disable" if disabled else "enable"
        self._change(lambda: {"op": op, "user": user} if disabled != (user in self.disabled) else None)

    # ---- disk: shared by every process serving this data directory ----
    #
    # Changes are made under an exclusive flock of `users.lock`: catch up with the file (other processes'
    # changes), decide on the fresh state, append one whole line with one write(), fsync. So a token is spent
    # once even when two workers are asked at the same moment, and a reader that catches up without the lock
    # sees whole lines only (it stops before a line still being written). Compaction renames a new file over
    # the journal: a reader notices the new inode and replays it from the start.

    def _change(self, decide) -> bool:
        """Under the lock: catch up, then append and apply decide()'s entry (None: nothing to do)."""
        with self._locked():
            self.refresh()
            entry = decide()
            if entry is None:
                return False
            line = encode_line(entry)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.directory)
            self.lines += 1
            self._apply(entry)
            self._ino, self._offset = st.st_ino, self._offset + len(line)
            return True

    def _locked(self):
        return _FileLock(self.directory / LOCK_NAME)

    def maybe_refresh(self) -> None:
        """Catch up with other processes' changes, at most once a second (a clock read otherwise)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + REFRESH_SECONDS
            self.refresh()

    def refresh(self) -> None:
        """Apply the whole lines appended since we last read; replay all of a file that was compacted."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_ino != self._ino:
                self._reset()
                self._ino = st.st_ino
            elif st.st_size <= self._offset:
                return
            fh.seek(self._offset)
            data = fh.read()
        for line in data.splitlines(keepends=True):
            entry = decode_line(line)
            if entry is None:
                break
            self._apply(entry)
            self._offset += len(line)
            self.lines += 1

    def _reset(self) -> None:
        self.signed_up, self.disabled, self.tokens = set(), set(), set()
        self.lines = self._offset = 0

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self._locked():
            self.refresh()
            size = self.path.stat().st_size
            if self._offset < size:  # a torn or corrupt tail: appends hold the lock, so only a crash leaves one
                self.dropped_bytes = size - self._offset
                with open(self.path, "r+b") as fh:
                    fh.truncate(self._offset)
                    fh.flush()
                    os.fsync(fh.fileno())
            live = len(self.signed_up) + len(self.disabled) + len(self.tokens)
            if self.lines > 2 * live + 64:
                self.compact()

    def compact(self) -> None:
        """Rewrite the journal as the state it describes (temp + fsync + rename + fsync dir); under the lock."""
        entries = self._snapshot()
        data = b"".join(encode_line(e) for e in entries)
        tmp = self.path.with_name(FILE_NAME + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            ino = os.fstat(fh.fileno()).st_ino
        os.replace(tmp, self.path)
        _fsync_dir(self.directory)
        self.lines, self._ino, self._offset = len(entries), ino, len(data)


class _FileLock:
    """An exclusive flock on a small lock file beside the journal, for one change."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = -1

    def __enter__(self) -> "_FileLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
