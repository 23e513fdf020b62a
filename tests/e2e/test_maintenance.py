"""The server's maintenance task (engine/maintenance.py): retention passes and checkpoints, one at a time."""

import os
import time

from engine.keyspace import Keyspace
from engine.keyspace.checkpoint import FILE_NAME

from .harness import ThreadServer


def _state(ks):
    return {(u, p): ks.read_value(ks.get(u, p)) for u in ks.users() for p in ks.list(u, "/", limit=10 ** 6)}


def test_server_checkpoints_after_retention_and_the_restart_uses_it(tmp_path, alice):
    data = tmp_path / "data"
    srv = ThreadServer(data, segment_bytes=64 * 1024, retention_bytes=1, retention_interval=0.2,
                       checkpoint_interval=0.2, checkpoint_min_records=1).start()
    try:
        ks = srv.app.keyspace
        for i in range(600):
            srv.call(ks.put, alice.user, f"/pub/k{i % 50}", b"%d" % i * 100)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (srv.server.maintenance.last.get("retention", {}).get("removed")
                                                   and os.path.exists(data / FILE_NAME)):
            time.sleep(0.05)
        assert srv.server.maintenance.last["retention"]["removed"] >= 1
        assert srv.server.maintenance.last["checkpoint"]["keys"] == 50
    finally:
        srv.stop()
    ks = Keyspace.open(str(data))
    try:
        assert ks.checkpoint_used
        got = _state(ks)
    finally:
        ks.close()
    full = Keyspace.open(str(data), use_checkpoint=False)
    try:
        assert got == _state(full) and len(got) == 50
    finally:
        full.close()
