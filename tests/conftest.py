"""Shared fixtures: the known-answer vectors of shared/SPEC.md."""

import json
import os
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_CANDIDATES = [
    Path(os.environ.get("HOMESTREAM_VECTORS", "")),
    _HERE.parent.parent / "shared" / "vectors.json",
    _HERE / "vectors.json",
]


def _load_vectors():
    for path in _CANDIDATES:
        if path.name and path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError("vectors.json not found (expected ../shared/vectors.json or tests/vectors.json)")


@pytest.fixture(scope="session")
def vectors():
    data = _load_vectors()
    return {key.split(" ")[0]: value for key, value in data.items()}


# ---- real servers and signing users, shared by tests/e2e, tests/sync and others ----

@pytest.fixture
def alice():
    from e2e.harness import Key

    return Key(b"\x01" * 32)


@pytest.fixture
def bob():
    from e2e.harness import Key

    return Key(b"\x02" * 32)


# The e2e server runs as one process (--workers 1, in a thread) and as a supervisor with a writer and two
# workers (--workers 2, a subprocess): every test written against `server`/`make_server` runs against both.
# HOMESTREAM_TEST_WORKERS=1 (or 2) runs only that layout.
WORKER_LAYOUTS = [int(w) for w in os.environ.get("HOMESTREAM_TEST_WORKERS", "1,2").split(",") if w.strip()]


@pytest.fixture(params=WORKER_LAYOUTS, ids=[f"workers{w}" for w in WORKER_LAYOUTS])
def server_workers(request):
    return request.param


@pytest.fixture
def server(tmp_path, server_workers):
    from e2e.harness import make_test_server

    srv = make_test_server(tmp_path / "data", server_workers)
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path, server_workers):
    from e2e.harness import make_test_server

    started = []

    def make(**overrides):
        srv = make_test_server(tmp_path / f"data{len(started)}", server_workers, **overrides)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
