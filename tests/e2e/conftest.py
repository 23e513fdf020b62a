import pytest

from .harness import Key, ThreadServer


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
