"""Signed requests checked beside the event loop.

A request carrying an HS1 `Authorization` header is handed to the C verifier pool (engine/native/verify.py)
before its handler runs, and the handler runs on the loop when the answer comes back. The handler then finds its
signature already checked (`Authenticator.remember`), so its checks run in their usual order (names 400, auth
401, resource 404) with the same messages as inline. The connection reads no further request while one is
deferred (see connection.py).

Invariants:
- the pool only answers "is this signature valid for this signed text"; skew, signer, owner and replay are
  decided by the handler on the loop, as always;
- a request whose header does not parse, whose timestamp is outside the skew window, whose signed text is too
  long for the pool, or that finds the pool full is not deferred: its handler runs at once and checks inline,
  giving the same answer;
- every deferred request is finished exactly once, while the pool is open; `close()` drops the unanswered
  ones, and is called only after the server's connections are closed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from ..errors import Unauthorized
from ..names import content_digest, remember_digest
from .auth import Checked, Credentials

if TYPE_CHECKING:
    from .auth import Authenticator
    from .message import Request

log = logging.getLogger("homestream.http")

_BODILESS = ("GET", "HEAD")  # a signed read signs the empty body (SPEC 2), a write its body


class Deferred:
    """A request waiting for its signature check; the connection sets `on_done(request, response)`."""

    __slots__ = ("request", "on_done")

    def __init__(self, request: "Request"):
        self.request = request
        self.on_done: Callable[[Any, Any], None] | None = None


class SignatureOffload:
    def __init__(self, verifier: Any, auth: "Authenticator", dispatch: Callable[["Request"], Any], loop: Any):
        self.verifier = verifier
        self.auth = auth
        self.dispatch = dispatch  # runs the handler: App._dispatch
        self.loop = loop
        self._waiting: dict[int, tuple[Deferred, str, bytes, bytes, Credentials]] = {}
        self._next_ticket = 1
        self.offloaded_total = 0
        self.inline_total = 0  # signed requests checked on the loop because the pool was full
        loop.add_reader(verifier.fileno(), self._on_ready)

    def __len__(self) -> int:
        return len(self._waiting)

    def submit(self, request: "Request") -> Deferred | None:
        """Defer a signed request until its check is answered; None: run it now (unsigned, bad header, full)."""
        header = request.headers.get(b"authorization")
        if header is None or not header.startswith(b"HS1 "):
            return None
        body = b"" if request.method in _BODILESS else request.body
        text = header.decode("latin-1")
        digest = content_digest(body)  # for the signed text now, and the log record after the check
        try:
            creds, message, _ = self.auth.prepare(text, request.method, request.path, body)
        except Unauthorized:
            return None  # the handler says why, inline
        ticket = self._next_ticket
        try:
            queued = self.verifier.submit(ticket, creds.signature, message, creds.public_key)
        except (ValueError, MemoryError):  # a signed text past the pool's 64 KiB (a raised request-line limit)
            queued = False
        if not queued:
            self.inline_total += 1
            return None
        self._next_ticket = ticket + 1
        self.offloaded_total += 1
        deferred = Deferred(request)
        self._waiting[ticket] = (deferred, text, body, digest, creds)
        return deferred

    def _on_ready(self) -> None:
        for ticket, valid in self.verifier.harvest():
            entry = self._waiting.pop(ticket, None)
            if entry is None:
                log.error("signature check answered for unknown ticket %d", ticket)
                continue
            deferred, text, body, digest, creds = entry
            request = deferred.request
            self.auth.remember(Checked(text, request.method, request.path, body, creds, valid))
            remember_digest(body, digest)  # other requests were hashed meanwhile: the handler need not rehash
            try:
                response = self.dispatch(request)
            finally:
                self.auth.forget()
            try:
                if deferred.on_done is not None:
                    deferred.on_done(deferred.request, response)
            except Exception:  # one connection's failure must not strand the other answers of this batch
                log.exception("finishing a deferred %s %s", deferred.request.method, deferred.request.path)

    def close(self) -> None:
        if self.verifier is None:
            return
        try:
            self.loop.remove_reader(self.verifier.fileno())
        finally:
            self.verifier.close()
            self.verifier = None
            self._waiting.clear()
