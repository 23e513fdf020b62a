"""One error taxonomy for the whole server.

ClientError and its subclasses are the peer's faults: each carries the HTTP status and a short
machine-readable code, and the HTTP layer turns it into `{"error": code, "message": ...}`.
StorageError and its subclasses are the server's own trouble with its files.
Invariant: code that raises a ClientError has not changed any state.
"""

from __future__ import annotations


class HomestreamError(Exception):
    """Base of every error this package raises on purpose."""


class ClientError(HomestreamError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadRequest(ClientError):
    status = 400
    code = "bad_request"


class InvalidName(BadRequest):
    """A user id, path, pattern or event id that SPEC section 1 forbids."""

    code = "invalid_name"


class Unauthorized(ClientError):
    status = 401
    code = "unauthorized"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class Forbidden(ClientError):
    """A signed request by a user who may not do this here: not signed up, or disabled (SPEC 5.2)."""

    status = 403
    code = "forbidden"


class QuotaExceeded(ClientError):
    """A write that would take the user's live bytes past --user-quota-bytes (SPEC 5.2)."""

    status = 507
    code = "quota_exceeded"


class RateLimited(ClientError):
    """Over a rate limit (SPEC 5.2); answered with `Retry-After: retry_after` (whole seconds, at least 1)."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class ValueTooLarge(PayloadTooLarge):
    """A value larger than the log accepts for one record."""

    code = "value_too_large"


class ServiceUnavailable(ClientError):
    status = 503
    code = "unavailable"


class StorageError(HomestreamError):
    """The server's own storage failed; the request is answered 500/507 and the log stays intact."""


class LogFull(StorageError):
    """The disk refused to allocate a new segment (ENOSPC) or the log was closed."""


class LogClosed(StorageError):
    """An operation on a log that was closed."""


class CorruptLog(StorageError):
    """A record that fails its CRC or framing where it must not (a sealed segment)."""

    def __init__(self, path: str, offset: int, reason: str):
        super().__init__(f"corrupt record in {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class DamagedSegment(CorruptLog):
    """A bad record that is not a torn tail: in a sealed segment, or with valid records after it (issue 21).

    The log refuses to open; `homestream repair` is the operator's way on. `valid_after` counts the valid records
    found after the bad spot in the same file; `lost` is the (first, last) seq range the bad bytes held, when the
    seqs around them tell it exactly (None otherwise)."""

    def __init__(self, path: str, offset: int, reason: str, *, valid_after: int, lost: tuple[int, int] | None,
                 bad_bytes: int, hint: str = ""):
        held = ("an unknown number of records" if not lost else f"seq {lost[0]}" if lost[0] == lost[1]
                else f"seqs {lost[0]}..{lost[1]}")
        message = (f"corrupt record in {path} at offset {offset}: {reason}; {bad_bytes} bad bytes holding {held}, "
                   f"{valid_after} valid record(s) after them in the same file")
        StorageError.__init__(self, message + (f"; {hint}" if hint else ""))
        self.path, self.offset, self.reason = path, offset, reason
        self.valid_after, self.lost, self.bad_bytes = valid_after, lost, bad_bytes


class MissingSegments(StorageError):
    """Seqs that no segment holds although they were used: a segment file is missing (issue 21).

    `first`..`last` is the missing range (`last` None when only a bound is known: see the message)."""

    def __init__(self, directory: str, first: int, last: int | None, detail: str):
        span = f"seqs {first}..{last}" if last is not None else f"seqs from {first} on"
        super().__init__(f"log in {directory}: {span} are missing: {detail}")
        self.directory, self.first, self.last = directory, first, last
