"""Fixtures of the log tests: user ids, a log directory, a helper to open logs that are closed after the test."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from engine.names import encode_user  # noqa: E402

USERS = [encode_user(bytes([i + 1]) * 32) for i in range(4)]


@pytest.fixture
def user():
    return USERS[0]


@pytest.fixture
def users():
    return list(USERS)


@pytest.fixture
def logdir(tmp_path):
    return str(tmp_path / "log")


@pytest.fixture
def open_log(logdir):
    from engine.log.store import Log
    opened = []

    def _open(directory=None, **kw):
        kw.setdefault("segment_bytes", 64 * 1024)
        log = Log.open(directory or logdir, **kw)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()
