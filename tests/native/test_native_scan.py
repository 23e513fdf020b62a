"""csrc/scan.c through engine/native/scan.py, against a small Python reference: the same hits in the same
order, budgets that stop exactly where asked and resume without a skip, and framing errors that never read
past the slice."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.log.record import DEL, PUT, decode_at, decode_records, encode
from engine.names import encode_user
from engine.native.scan import MalformedRecords, ScanFilter, Scanner

U64 = (1 << 64) - 1
USERS = [encode_user(bytes([i]) * 32) for i in range(4)]
paths = st.builds(lambda head, tail: head + tail,
                  st.sampled_from(["/pub/", "/pub/a/", "/priv/", "/", "/pubx", "/pub"]),
                  st.text(st.sampled_from("ab/é\u2028"), max_size=6))


@st.composite
def logs(draw):
    """Consecutive records with increasing seqs, as a log slice holds them."""
    n = draw(st.integers(0, 30))
    seq = draw(st.integers(1, 50))
    out = []
    for _ in range(n):
        seq += draw(st.integers(1, 3))
        user = draw(st.sampled_from(USERS))
        path = draw(paths)
        if draw(st.booleans()):
            out.append(encode(seq, 1, PUT, user, path, bytes(32), "", draw(st.binary(max_size=20))))
        else:
            out.append(encode(seq, 1, DEL, user, path))
    return b"".join(out)


@st.composite
def filters(draw):
    users = None
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=4, unique=True))
        users = {u: (draw(st.integers(0, 80)), draw(st.sampled_from([0, draw(st.integers(1, 120))])))
                 for u in chosen}
    prefix = draw(st.sampled_from(["", "/", "/pub/", "/pub/a", "/priv/", "/x"]))
    reader = draw(st.one_of(st.none(), st.sampled_from(USERS)))
    return users, prefix, reader


def reference(data, users, prefix, reader, until):
    hits, off = [], 0
    for rec in decode_records(data):
        if rec.seq > until:
            break
        ok = rec.path.startswith(prefix) and (rec.path.startswith("/pub/") or rec.user == reader)
        if ok and users is not None:
            bounds = users.get(rec.user)
            ok = bounds is not None and rec.seq > bounds[0] and (not bounds[1] or rec.seq < bounds[1])
        if ok:
            hits.append(rec.seq)
    return hits


def seqs_at(data, offsets):
    return [decode_at(data, off, verify=False)[0].seq for off in offsets]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), filters(), st.one_of(st.just(U64), st.integers(0, 150)))
def test_hits_match_the_reference(data, flt, until):
    users, prefix, reader = flt
    more, consumed, last, examined, hits = Scanner(64).scan(data, until, ScanFilter(users, prefix, reader), 10**9)
    assert not more
    assert seqs_at(data, hits) == reference(data, users, prefix, reader, until)
    walked = [r.seq for r in decode_records(data) if r.seq <= until]
    assert examined == len(walked) and last == (walked[-1] if walked else 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), filters(), st.integers(1, 5), st.integers(1, 5))
def test_budgets_stop_exactly_and_resume_without_a_skip(data, flt, budget, max_hits):
    users, prefix, reader = flt
    filt = ScanFilter(users, prefix, reader)
    scanner = Scanner(8)
    got, off, total = [], 0, 0
    while True:
        more, consumed, _last, examined, hits = scanner.scan(data[off:], U64, filt, budget, max_hits)
        assert examined <= budget and len(hits) <= max_hits
        assert not more or examined == budget or len(hits) == max_hits  # it stopped for a budget, exactly
        got += seqs_at(data, [off + h for h in hits])
        off += consumed
        total += examined
        if not more:
            break
    assert got == reference(data, users, prefix, reader, U64)
    assert total == sum(1 for _ in decode_records(data))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), st.data())
def test_a_cut_slice_is_an_error_and_never_read_past(data, d):
    if not data:
        return
    cut = d.draw(st.integers(1, len(data) - 1))
    piece = bytearray(data[:cut])
    try:
        Scanner(64).scan(bytes(piece), U64, ScanFilter(None, ""), 10**9)
    except MalformedRecords as exc:
        assert 0 <= exc.offset < cut


def test_wrapper_validates_its_inputs():
    with pytest.raises(ValueError):
        ScanFilter({"short": (0, 0)})
    with pytest.raises(ValueError):
        ScanFilter(None, "", reader="x")
    with pytest.raises(ValueError):
        Scanner(0)
    with pytest.raises(TypeError):
        Scanner().scan(b"", 0, object(), 1)
    with pytest.raises(ValueError):
        Scanner().scan(b"", 0, ScanFilter(None), -1)
    assert Scanner().scan(b"", U64, ScanFilter(None), 5) == (False, 0, 0, 0, [])
    rec = encode(7, 1, PUT, USERS[0], "/pub/a", bytes(32), "", b"v")
    assert Scanner().scan(rec + bytes(8), U64, ScanFilter(None), 5)[4] == [0]  # zero padding ends the data
