"""Wires set reconciliation and the seed's storage API into an App (called by engine/server.py).

Sets `app.extensions["sync"]` to the SyncService (the per-collection Registry, fed by the keyspace listener, and
the /sync sessions) and registers the handlers of POST /sync/, POST /set/, GET|POST /get and GET|POST /bloom.
"""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    from ..api import seedstore
    from .collections import Registry
    from .server import SyncService, sync_handler

    app.extensions["sync"] = SyncService(Registry(app.keyspace))
    app.add_handlers({
        "sync": sync_handler,
        "seed_set": seedstore.seed_set,
        "seed_get": seedstore.seed_get,
        "seed_bloom": seedstore.seed_bloom,
    })
