"""Exceptions of the client library.

Invariant: everything the client raises on purpose derives from ClientFailure, so a caller (and the CLI) can
catch one type; a server answer with an error status is ApiError carrying the HTTP status and the server's JSON
`{"error": code, "message": ...}` (or a code made from the status when the body is not that JSON).
"""

from __future__ import annotations

import json


class ClientFailure(Exception):
    """Base of every error the client raises on purpose."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class KeyFileError(ClientFailure):
    """A key file that is missing, unreadable, malformed, or would be overwritten."""


class LocalFileError(ClientFailure):
    """A local file the client must read or write (a stream's state file, a sync folder) that it cannot."""


class BadReference(ClientFailure, ValueError):
    """A key, path, pattern or event id that cannot be sent (the caller's mistake, found before any request)."""


class ConnectionFailed(ClientFailure):
    """The server could not be reached or the connection broke mid-request."""


class ApiError(ClientFailure):
    """The server answered with an error status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}" if message else f"{status} {code}")
        self.status = status
        self.code = code
        self.server_message = message
        self.headers = headers or {}

    @classmethod
    def from_response(cls, status: int, body: bytes, headers: dict[str, str] | None = None) -> "ApiError":
        code, message = _status_code_name(status), ""
        try:
            doc = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            doc = None
        if isinstance(doc, dict):
            code = str(doc.get("error") or code)
            message = str(doc.get("message") or "")
        elif body:
            message = body[:200].decode("utf-8", "replace").strip()
        kind = _BY_STATUS.get(status, ApiError)
        return kind(status, code, message, headers)


class BadRequestError(ApiError):
    pass


class UnauthorizedError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class TooLargeError(ApiError):
    pass


class ServerUnavailableError(ApiError):
    pass


_BY_STATUS = {400: BadRequestError, 401: UnauthorizedError, 404: NotFoundError, 413: TooLargeError,
              503: ServerUnavailableError}


def _status_code_name(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"
