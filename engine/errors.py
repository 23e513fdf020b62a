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
