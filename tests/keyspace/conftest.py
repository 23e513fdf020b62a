"""Fixtures of the keyspace tests."""

import pytest

from engine.names import encode_user

USERS = [encode_user(bytes([i + 1]) * 32) for i in range(3)]


@pytest.fixture
def users():
    return list(USERS)


@pytest.fixture
def open_ks(tmp_path):
    from engine.keyspace import Keyspace
    opened = []

    def _open(**kw):
        kw.setdefault("segment_bytes", 8192)
        ks = Keyspace.open(str(tmp_path / "ks"), **kw)
        opened.append(ks)
        return ks

    yield _open
    for ks in opened:
        ks.close()
