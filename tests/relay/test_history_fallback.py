"""engine/pubsub/history.scan's Python path (a relay's log of version 2 records, which csrc/scan.c does not read)
gives the same pages as the C path over the same version 1 log, for every filter, budget and hit limit."""

import pytest
from hypothesis import given, settings, strategies as st

from engine.log.record import DEL, PUT
from engine.log.store import Log
from engine.names import encode_user
from engine.pubsub import history
from engine.pubsub.history import ScanFilter

USERS = [encode_user(bytes([i + 60]) * 32) for i in range(3)]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    log = Log.open(str(tmp_path_factory.mktemp("h")), segment_bytes=64 * 1024, fsync="never")
    for i in range(300):
        path = ("/pub/a/", "/pub/b/", "/priv/")[i % 3] + str(i)
        log.append(DEL if i % 11 == 0 else PUT, USERS[i % 3], path, b"v")
    log.flush()
    yield log
    log.close()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 320), st.integers(0, 320), st.sampled_from(["", "/pub/", "/pub/a/", "/priv/"]),
       st.sampled_from([None, 0, 1]), st.booleans(), st.integers(1, 400), st.integers(1, 50))
def test_python_scan_equals_the_c_scan(log, start, span, prefix, reader, with_users, budget, max_hits):
    users = {USERS[0]: (start + 10, 0), USERS[2]: (0, start + 100)} if with_users else None
    filt = ScanFilter(users, prefix, USERS[reader] if reader is not None else None)
    c_page = history.scan(log, start, start + span, filt, budget=budget, max_hits=max_hits)
    log.native_scan = False
    try:
        py_page = history.scan(log, start, start + span, filt, budget=budget, max_hits=max_hits)
    finally:
        del log.native_scan
    assert [r.seq for r in py_page.records] == [r.seq for r in c_page.records]
    assert (py_page.last, py_page.complete) == (c_page.last, c_page.complete)
