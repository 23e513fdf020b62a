"""What a handler may use of the application: engine/app.py's App as the handlers of api/ (and sync/) see it.

Handlers are typed against this Protocol rather than against App, so that api/ imports nothing above it:
app.py imports the handlers, never the other way round. App satisfies it structurally; a new attribute a
handler needs is added here first.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..config import Settings
from ..http.auth import Authenticator
from ..metrics import Metrics


class AppContext(Protocol):
    settings: Settings
    log: Any  # engine.log.store.Log, or a follower's engine.log.reader.LogReader
    keyspace: Any  # engine.keyspace.Keyspace
    hub: Any  # engine.pubsub.hub.Hub, once installed
    auth: Authenticator
    metrics: Metrics
    extensions: dict[str, Any]
    read_cache: Any  # engine.api.read_cache.ReadCache or None
    writes: Any  # engine.api.writes.LocalWrites, or a worker's ForwardedWrites

    def add_handlers(self, handlers: dict[str, Callable]) -> None: ...
