"""Fixtures for tests/sync: a hard time limit per test, real servers, signing users, a server-less registry."""

import pytest

from client.guard import hard_timeout, register  # noqa: F401  (autouse fixture)
from e2e.harness import Key, ThreadServer


def pytest_configure(config):
    register(config)


@pytest.fixture
def alice():
    return Key(b"\x01" * 32)


@pytest.fixture
def bob():
    return Key(b"\x02" * 32)


@pytest.fixture
def server(tmp_path):
    srv = ThreadServer(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path):
    started = []

    def make(**overrides):
        srv = ThreadServer(tmp_path / f"data{len(started)}", **overrides).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
