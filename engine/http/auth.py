"""HS1 request signatures (SPEC 2): `Authorization: HS1 <signer>.<unix-seconds>.<signature>`.

The signature is ed25519 over `HS1\\n<METHOD>\\n<decoded path>\\n<unix-seconds>\\n<content hash of the body>`.
Invariants: every failure is Unauthorized (401), never 400; a write signature is accepted at most once inside
the skew window (the replay memory keeps a 16-byte digest per accepted write and forgets it when the window
passes, so memory is bounded by the write rate times the window); read signatures may be reused.
A write signature is remembered only once its request was accepted: `verify` checks that it is new and keeps it
aside, and the app `settle`s it after the handler -- remembered on a 2xx answer, dropped on any refusal (a 4xx
or 5xx raised or answered after the check: a name, a quota, a full disk), so a refused request never uses up
its signature.
"""

from __future__ import annotations

import base64
import binascii
import collections
import time
from dataclasses import dataclass
from typing import Callable

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ..errors import InvalidName, Unauthorized
from ..names import content_hash, decode_user, encode_user

SCHEME = "HS1"
SIGNATURE_TEXT_LENGTH = 86  # 64 bytes in base64url without padding
REPLAYED = "replayed"  # the error code of a 401 for a write signature already accepted (clients re-sign on it)


@dataclass(frozen=True, slots=True)
class Credentials:
    signer: str
    public_key: bytes
    timestamp: int
    signature: bytes


def signed_text(method: str, path: str, timestamp: int, body_hash: str) -> bytes:
    return f"{SCHEME}\n{method}\n{path}\n{timestamp}\n{body_hash}".encode("utf-8")


def sign_request(signing_key: nacl.signing.SigningKey, method: str, path: str, body: bytes = b"",
                 timestamp: int | None = None) -> str:
    """The Authorization header value for a request (used by the client, tests and benches)."""
    ts = int(time.time()) if timestamp is None else timestamp
    sig = signing_key.sign(signed_text(method, path, ts, content_hash(body))).signature
    signer = encode_user(bytes(signing_key.verify_key))
    return f"{SCHEME} {signer}.{ts}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode('ascii')}"


def parse_authorization(value: str | None) -> Credentials:
    """Parse the header value; Unauthorized when missing or malformed."""
    if not value:
        raise Unauthorized("missing Authorization: HS1 <signer>.<unix-seconds>.<signature>")
    scheme, _, rest = value.strip().partition(" ")
    if scheme != SCHEME:
        raise Unauthorized("Authorization scheme must be HS1")
    parts = rest.strip().split(".")
    if len(parts) != 3:
        raise Unauthorized("Authorization must be HS1 <signer>.<unix-seconds>.<signature>")
    signer, ts_text, sig_text = parts
    try:
        public_key = decode_user(signer)
    except InvalidName:
        raise Unauthorized("the signer is not a valid user id") from None
    if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 12:
        raise Unauthorized("the timestamp must be unix seconds")
    if len(sig_text) != SIGNATURE_TEXT_LENGTH:
        raise Unauthorized("the signature must be 64 bytes in base64url without padding")
    try:
        signature = base64.urlsafe_b64decode(sig_text + "==")
    except (binascii.Error, ValueError):
        raise Unauthorized("the signature is not base64url") from None
    if len(signature) != 64 or "=" in sig_text or "+" in sig_text or "/" in sig_text:
        raise Unauthorized("the signature must be 64 bytes in base64url without padding")
    return Credentials(signer, public_key, int(ts_text), signature)


class ReplayMemory:
    """Digests of accepted write signatures, each kept until its timestamp leaves the skew window."""

    def __init__(self, window: float):
        self.window = window
        self._seen: set[bytes] = set()
        self._expiry: collections.deque[tuple[float, bytes]] = collections.deque()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, signature: bytes, now: float) -> bool:
        """Was this signature already accepted inside the window?"""
        self._forget(now)
        return signature[:16] in self._seen  # ed25519's R: unique per (key, message) for a deterministic signer

    def remember(self, signature: bytes, timestamp: int, now: float) -> bool:
        """Remember an accepted signature; False (and nothing changed) if it was already remembered."""
        self._forget(now)
        digest = signature[:16]
        if digest in self._seen:
            return False
        self._seen.add(digest)
        # kept until the signature can no longer pass the skew check
        self._expiry.append((max(timestamp + self.window, now) + 1, digest))
        return True

    def check_and_remember(self, signature: bytes, timestamp: int, now: float) -> bool:
        """True if new (and now remembered), False if it was already accepted."""
        return self.remember(signature, timestamp, now)

    def _forget(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            _, digest = expiry.popleft()
            self._seen.discard(digest)


@dataclass(frozen=True, slots=True)
class Checked:
    """A signature checked before its handler ran: for exactly this header, method, path and body object."""

    header: str
    method: str
    path: str
    body: bytes
    creds: Credentials
    valid: bool


class Authenticator:
    """Signature checks. `verify` is the one decision point; a check done beforehand off the loop (engine/http/
    offload.py) is handed in with `remember` and consumed there, so every decision (skew, signer, replay) and every
    error message is the same whether the signature was checked inline or beside the loop."""

    def __init__(self, skew: float = 300.0, open_writes: bool = False, clock: Callable[[], float] = time.time):
        self.skew = skew
        self.open_writes = open_writes
        self.clock = clock
        self.replay = ReplayMemory(skew)
        self._checked: Checked | None = None  # the answer `remember`ed for the request being handled
        self.write_gate: Callable[[str], None] | None = None  # Policy.admit_write: may raise 403/429
        self._unsettled: list[tuple[bytes, int, float]] = []  # write signatures of the request being handled
        # serve --workers N: the replay check of a write is left to the writer process, which sees every worker's
        # writes; `verify` then keeps the token for the handler to send along (`take_replay`)
        self.replay_elsewhere = False
        self._replay_token: tuple[bytes, int] | None = None

    def prepare(self, header: str | None, method: str, path: str, body: bytes) -> tuple[Credentials, bytes, float]:
        """Parse the header and check the clock: (credentials, signed text, now), or Unauthorized."""
        creds = parse_authorization(header)
        now = self._now_within_skew(creds)
        return creds, signed_text(method, path, creds.timestamp, content_hash(body)), now

    def _now_within_skew(self, creds: Credentials) -> float:
        now = self.clock()
        if abs(now - creds.timestamp) > self.skew:
            raise Unauthorized(f"the signature's timestamp is more than {int(self.skew)} s from the server's clock")
        return now

    def remember(self, checked: "Checked") -> None:
        """The answer of a check made elsewhere, for the `verify` calls of the handler that runs next; the
        handler runs synchronously, then `forget()`."""
        self._checked = checked

    def forget(self) -> None:
        self._checked = None

    def verify(self, header: str | None, method: str, path: str, body: bytes, *, write: bool) -> str:
        """Check a signature; return the signer's user id or raise Unauthorized."""
        known = self._checked
        if known is not None and known.body is body and known.header == header and known.method == method \
                and known.path == path:  # the very request prepared: the same header, text and body object
            creds, valid = known.creds, known.valid
            now = self._now_within_skew(creds)
        else:
            creds, message, now = self.prepare(header, method, path, body)
            valid = _check_inline(creds.signature, message, creds.public_key)
        if not valid:
            raise Unauthorized("bad signature")
        if write:
            if self.replay_elsewhere:  # the writer process checks and remembers it (engine/api/writes.py)
                self._replay_token = (creds.signature[:16], creds.timestamp)
            else:
                if self.replay.seen(creds.signature, now) or any(u[0] == creds.signature for u in self._unsettled):
                    raise Unauthorized("replayed signature: this write was already accepted", code=REPLAYED)
                self._unsettled.append((creds.signature, creds.timestamp, now))
        return creds.signer

    def settle(self, accepted: bool) -> None:
        """After a handler: remember the write signatures it checked if its request was accepted, else drop
        them so that the same signed request can be sent again (the app calls this once per request)."""
        if self._unsettled:
            if accepted:
                for signature, timestamp, now in self._unsettled:
                    self.replay.remember(signature, timestamp, now)
            self._unsettled.clear()

    def authorize_write(self, header: str | None, method: str, path: str, body: bytes, owner: str) -> None:
        if not self.open_writes:
            signer = self.verify(header, method, path, body, write=True)
            if signer != owner:
                raise Unauthorized("the signer is not the user this path belongs to")
        if self.write_gate is not None:  # SPEC 5.2: signup and rate limits, right after auth (engine/policy)
            self.write_gate(owner)

    def take_replay(self) -> tuple[bytes, int] | None:
        """The replay token `verify` kept for the write being handled (only with `replay_elsewhere`), once."""
        token, self._replay_token = self._replay_token, None
        return token

    def reader(self, header: str | None, method: str, path: str) -> str | None:
        """The authenticated reader, or None when no credentials were sent. Bad credentials are 401."""
        if header is None:
            return None
        return self.verify(header, method, path, b"", write=False)


def _check_inline(signature: bytes, message: bytes, public_key: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True
