"""engine.client: the Python client of homestream.

`Client` / `AsyncClient` (engine/client/http.py) sign and send storage calls and hand out event streams
(engine/client/stream.py) that reconnect and resume by themselves; key files are engine/client/keys.py.
engine/client/sync.py (set reconciliation) is separate and imported on its own.
Invariant: importing this package needs nothing beyond the install dependencies (httpx, pynacl, blake3).
"""

from .errors import (ApiError, BadReference, ClientFailure, ConnectionFailed, KeyFileError,  # noqa: F401
                     NotFoundError, UnauthorizedError)
from .http import AsyncClient, Blob, Client, ListPage, Signer, WriteResult  # noqa: F401
from .keys import generate_key, load_key, user_id, write_key  # noqa: F401
from .stream import AsyncStream, End, Event, Gap, Stream  # noqa: F401
