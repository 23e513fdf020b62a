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


@pytest.fixture
def server(tmp_path):
    from e2e.harness import ThreadServer

    srv = ThreadServer(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path):
    from e2e.harness import ThreadServer

    started = []

    def make(**overrides):
        srv = ThreadServer(tmp_path / f"data{len(started)}", **overrides).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
