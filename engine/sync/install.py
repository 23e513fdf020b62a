"""Wires set reconciliation and the seed's storage API into an App (called by engine/server.py).

Sets `app.extensions["sync"]` to the SyncService (the per-collection Registry, fed by the keyspace listener, and
the /sync sessions) and registers the handlers of POST /sync/, POST /set/, GET|POST /get and GET|POST /bloom.
"""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    from ..api import seedstore
    from .collections import Registry
    from .server import SYMBOL_BYTES, Sessions, SyncService, sync_handler

    settings = app.settings
    sessions = Sessions(max_symbols=max(1, settings.sync_session_bytes // SYMBOL_BYTES))
    app.extensions["sync"] = SyncService(Registry(app.keyspace), sessions, max_symbols=settings.sync_max_symbols)
    app.add_handlers({
        "sync": sync_handler,
        "seed_set": seedstore.seed_set,
        "seed_get": seedstore.seed_get,
        "seed_bloom": seedstore.seed_bloom,
    })
