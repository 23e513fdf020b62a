"""History replay in C (csrc/sse.c through engine.native.sse) against the Python path: records built with
engine.log.record.encode, frames from engine.http.sse.event_frame, matching by
engine.pubsub.subscription.make_matcher for one pattern."""

import ctypes
import mmap
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.http.sse import event_frame
from engine.log.record import DEL, PUT, Record, decode_records, encode
from engine.names import Pattern, encode_user
from engine.native._lib import ffi, lib
from engine.native.sse import FRAME_MAX, MalformedRecords, Replayer, ReplayFilter
from engine.pubsub.subscription import make_matcher, native_filter

U64 = (1 << 64) - 1
USERS = [encode_user(bytes([i]) * 32) for i in range(3)]

path_chars = st.characters(blacklist_categories=("Cs",))
tricky = st.sampled_from(['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f", "é", "€",
                          "😀", "\u2028", "\u2029", "\x85", "\u2027", "\xc2", "\u2000", "/", "a"])
segment = st.text(st.one_of(path_chars, tricky), max_size=12)
paths = st.builds(lambda head, tail: head + tail,
                  st.sampled_from(["/pub/", "/pub/a/", "/pub/a/b", "/priv/", "/", "", "/pubx", "/pub"]), segment)


@st.composite
def records(draw):
    kind = draw(st.sampled_from([PUT, DEL]))
    seq = draw(st.one_of(st.integers(1, 1000), st.integers(1, U64)))  # log seqs are >= 1
    ts = draw(st.one_of(st.integers(0, 2**41), st.integers(0, U64)))
    user = draw(st.sampled_from(USERS))
    path = draw(paths)
    if kind == PUT:
        digest = draw(st.binary(min_size=32, max_size=32))
        ctype = draw(st.sampled_from(["", "application/json", "text/plain; charset=é"]))
        value = draw(st.binary(max_size=40))
        return encode(seq, ts, PUT, user, path, digest, ctype, value)
    return encode(seq, ts, DEL, user, path)


@st.composite
def patterns(draw, paths_seen):
    user = draw(st.one_of(st.none(), st.sampled_from(USERS)))
    if paths_seen and draw(st.booleans()):
        p = draw(st.sampled_from(paths_seen))
        path = p[:draw(st.integers(0, len(p)))]
    else:
        path = draw(paths)
    prefix = draw(st.booleans())
    return Pattern("test", user, path, prefix)


def expected(data, pattern, reader, until):
    matches = make_matcher([pattern], reader)
    frames, examined, last = [], 0, None
    for rec in decode_records(data):
        if rec.seq > until:
            break
        examined = rec.seq
        if matches(rec):
            frames.append(event_frame(rec))
            last = (rec.seq, rec.user)
    return frames, examined, last


def filter_for(pattern, reader):
    f = native_filter([pattern], reader, inline=False, limit=None, encoder=None, matches=None)
    assert f is not None
    return f


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_frames_match_event_frame(data):
    recs = data.draw(st.lists(records(), max_size=12))
    buf = b"".join(recs) + data.draw(st.sampled_from([b"", bytes(4), bytes(200), bytes(2)]))
    seen = [r.path for r in decode_records(buf)]
    pattern = data.draw(patterns(seen))
    reader = data.draw(st.one_of(st.none(), st.sampled_from(USERS)))
    until = data.draw(st.one_of(st.just(U64), st.integers(0, U64), st.integers(0, 1000)))
    frames, examined, last = expected(buf, pattern, reader, until)
    rep = Replayer()
    more, consumed, last_seq, n, fseq, fuser = rep.feed(memoryview(buf), until, filter_for(pattern, reader))
    assert rep.take() == b"".join(frames)
    assert not more
    assert last_seq == examined
    assert n == len(frames)
    assert (fseq, fuser) == (last if last else (None, None))
    assert consumed <= len(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_small_budget_resumes_from_consumed(data):
    recs = data.draw(st.lists(records(), min_size=1, max_size=12))
    buf = b"".join(recs)
    seen = [r.path for r in decode_records(buf)]
    pattern = data.draw(patterns(seen))
    reader = data.draw(st.one_of(st.none(), st.sampled_from(USERS)))
    frames, examined, last = expected(buf, pattern, reader, U64)
    soft = data.draw(st.integers(0, 600))
    rep = Replayer(soft_max=soft)
    filt = filter_for(pattern, reader)
    got, pos, count, lastf, calls = [], 0, 0, None, 0
    last_examined = 0
    while True:
        calls += 1
        assert calls <= len(recs) + 2
        more, consumed, last_seq, n, fseq, fuser = rep.feed(memoryview(buf)[pos:], U64, filt, soft)
        chunk = rep.take()
        got.append(chunk)
        if last_seq:
            last_examined = last_seq
        if n:
            count += n
            lastf = (fseq, fuser)
            assert chunk.endswith(frames[count - 1])
        if more:
            assert n >= 1  # a buffer of soft_max + FRAME_MAX always makes progress
            assert len(chunk) >= soft
            assert len(chunk) - len(frames[count - 1]) < soft or n == 1
        pos += consumed
        if not more:
            break
    assert b"".join(got) == b"".join(frames)
    assert pos == len(buf)
    assert count == len(frames)
    assert lastf == last
    assert last_examined == examined


def raw_replay(buf, until, filt, cap, soft):
    """sseReplay into an output of exactly `cap` bytes followed by guard bytes that must stay untouched."""
    out = ffi.new("char[]", cap + 64)
    ffi.memmove(out + cap, b"\xa5" * 64, 64)
    res = ffi.new("sseResult *")
    src = ffi.from_buffer("char[]", buf)
    rc = lib.sseReplay(src, len(buf), until, filt._c, out, cap, soft, res)
    assert ffi.buffer(out + cap, 64)[:] == b"\xa5" * 64
    assert res.written <= cap
    return rc, res, ffi.buffer(out, res.written)[:]


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=8), st.integers(0, 1200))
def test_hard_cap_stops_before_overflow(recs, cap):
    buf = b"".join(recs)
    pattern = Pattern("*", None, "/", True)
    frames, _, _ = expected(buf, pattern, None, U64)
    filt = filter_for(pattern, None)
    got, pos = b"", 0
    while True:
        rc, res, out = raw_replay(buf[pos:], U64, filt, cap, 1 << 40)
        got += out
        pos += res.consumed
        assert rc in (lib.SSE_DONE, lib.SSE_MORE)
        if rc == lib.SSE_DONE:
            break
        if res.frames == 0:  # the next frame does not fit at all
            break
    if rc == lib.SSE_DONE:
        assert got == b"".join(frames)
    else:
        assert b"".join(frames).startswith(got)
        assert any(len(f) > cap for f in frames)


def guarded(data: bytes):
    """`data` placed at the very end of a readable page followed by an inaccessible one: a read past the end
    faults. Returns (view, mmap); release the view, then close the mmap."""
    page = mmap.PAGESIZE
    npages = (len(data) + page - 1) // page + 1
    mm = mmap.mmap(-1, npages * page)
    start = (npages - 1) * page - len(data)
    mm[start:start + len(data)] = data
    ptr = ffi.from_buffer(mm)
    addr = int(ffi.cast("uintptr_t", ptr))
    ffi.release(ptr)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr + (npages - 1) * page, page, 0) == 0
    return memoryview(mm)[start:start + len(data)], mm


def unguard(view, mm):
    view.release()
    mm.close()


@pytest.mark.skipif(not hasattr(ctypes, "CDLL") or os.name != "posix", reason="needs mprotect")
@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=6), st.data())
def test_truncated_slices_stop_with_an_error_and_never_read_past_the_end(recs, data):
    buf = b"".join(recs)
    cut = data.draw(st.integers(0, len(buf) - 1))
    trunc = buf[:cut]
    bounds = [0]
    for r in recs:
        bounds.append(bounds[-1] + len(r))
    view, mm = guarded(trunc)
    filt = ReplayFilter(None, "/", True)
    rep = Replayer()
    whole = max(b for b in bounds if b <= cut)
    if cut - whole < 4 and not any(trunc[whole:]):  # a torn length field of zeros reads as padding
        more, consumed, *_ = rep.feed(view, U64, filt)
        assert consumed == whole and not more
    else:
        with pytest.raises(MalformedRecords) as exc:
            rep.feed(view, U64, filt)
        assert exc.value.offset == whole
        star = Pattern("*", None, "/", True)
        assert rep.take() == b"".join(expected(buf[:exc.value.offset], star, None, U64)[0])
    unguard(view, mm)


@given(st.binary(max_size=600), st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_garbage_never_reads_past_the_end(head, garbage):
    rec = encode(7, 1, PUT, USERS[0], "/pub/x", bytes(32), "", b"v")
    for buf in (garbage, rec + garbage, head):
        view, mm = guarded(buf)
        rep = Replayer(soft_max=1024)
        try:
            more, consumed, *_ = rep.feed(view, U64, ReplayFilter(None, "/", True))
            assert consumed <= len(buf)
        except MalformedRecords as exc:
            assert 0 <= exc.offset <= len(buf)
        assert rep.fill <= rep.cap
        unguard(view, mm)


@pytest.mark.parametrize("mutate", ["length_small", "magic", "kind", "sum", "user"])
def test_bad_fields_are_errors(mutate):
    good = encode(3, 1, PUT, USERS[1], "/pub/a", bytes(32), "t", b"xyz")
    bad = bytearray(encode(4, 1, PUT, USERS[1], "/pub/b", bytes(32), "t", b"xyz"))
    if mutate == "length_small":
        bad[0:4] = (119).to_bytes(4, "little")
    elif mutate == "magic":
        bad[8] = 0xB2
    elif mutate == "kind":
        bad[9] = 3
    elif mutate == "sum":
        bad[10] += 1
    else:
        bad[40] = 0xC3
    rep = Replayer()
    with pytest.raises(MalformedRecords) as exc:
        rep.feed(good + bytes(bad), U64, ReplayFilter(None, "/", True))
    assert exc.value.offset == len(good)
    assert rep.take() == event_frame(next(decode_records(good)))


def test_zero_length_ends_the_data_and_until_stops_the_walk():
    a = encode(1, 1, PUT, USERS[0], "/pub/a", bytes(32), "", b"")
    b = encode(5, 1, DEL, USERS[0], "/pub/b")
    rep = Replayer()
    filt = ReplayFilter(None, "/pub/", True)
    assert rep.feed(a + bytes(8) + b, U64, filt)[:4] == (False, len(a), 1, 1)
    rep.take()
    assert rep.feed(a + b, 4, filt)[:4] == (False, len(a), 1, 1)
    rep.take()
    assert rep.feed(b"", U64, filt) == (False, 0, 0, 0, None, None)
    assert rep.feed(bytearray(a + b), 0, filt) == (False, 0, 0, 0, None, None)


def test_wrapper_validates_its_inputs():
    with pytest.raises(ValueError):
        ReplayFilter("short", "/", True)
    with pytest.raises(ValueError):
        ReplayFilter(None, "/", True, allow_private=True)
    with pytest.raises(TypeError):
        ReplayFilter(None, b"/", True)
    rep = Replayer(soft_max=16)
    assert rep.cap == 16 + FRAME_MAX
    f = ReplayFilter(None, "/", True)
    with pytest.raises(TypeError):
        rep.feed("text", U64, f)
    with pytest.raises(TypeError):
        rep.feed(b"", U64, object())
    with pytest.raises(ValueError):
        rep.feed(b"", -1, f)
    with pytest.raises(ValueError):
        rep.feed(b"", U64, f, -1)
    with pytest.raises(ValueError):
        Replayer(soft_max=-1)


def test_native_filter_is_chosen_only_for_the_simple_case():
    p = Pattern("x", USERS[0], "/pub/", True)
    assert native_filter([p], None, inline=False, limit=None, encoder=None, matches=None).allow_private is False
    assert native_filter([p], USERS[0], inline=False, limit=None, encoder=None, matches=None).allow_private
    assert native_filter([p, p], None, inline=False, limit=None, encoder=None, matches=None) is None
    assert native_filter([p], None, inline=True, limit=None, encoder=None, matches=None) is None
    assert native_filter([p], None, inline=False, limit=3, encoder=None, matches=None) is None
    assert native_filter([p], None, inline=False, limit=None, encoder=bytes, matches=None) is None
    assert native_filter([p], None, inline=False, limit=None, encoder=None, matches=bool) is None
    star = Pattern("*", None, "/", True)
    assert native_filter([star], USERS[0], inline=False, limit=None, encoder=None, matches=None).allow_private is False


def test_large_replay_matches_python():
    rng = random.Random(5)
    recs = [encode(i, 1000 + i, rng.choice([PUT, DEL]), rng.choice(USERS),
                   rng.choice(["/pub/", "/priv/"]) + "".join(rng.choice('ab"\\\né/') for _ in range(rng.randrange(30))),
                   os.urandom(32), "", b"x" * rng.randrange(10)) for i in range(1, 3000)]
    buf = b"".join(recs)
    for pattern, reader in [(Pattern("*", None, "/", True), None), (Pattern("u", USERS[1], "/", True), USERS[1]),
                            (Pattern("u", USERS[1], "/pub/", True), USERS[2])]:
        frames, _, _ = expected(buf, pattern, reader, U64)
        rep = Replayer(soft_max=4096)
        got, pos = [], 0
        while True:
            more, consumed, *_ = rep.feed(memoryview(buf)[pos:], U64, filter_for(pattern, reader))
            got.append(rep.take())
            pos += consumed
            if not more:
                break
        assert b"".join(got) == b"".join(frames)


def test_line_separators_in_paths_are_escaped_in_the_frame():
    """U+0085, U+2028, U+2029 go out as \\u escapes (strict parsers and line splitters agree), byte for byte the
    Python frame; their UTF-8 neighbours (U+2027, U+00C2...) stay raw."""
    import json

    path = "/pub/a\u2028b\u2029c\x85d\u2027e\xc2f"
    rec = Record(5, 1700000000000, PUT, USERS[0], path, bytes(32), "", b"x")
    data = encode(rec.seq, rec.ts, PUT, rec.user, path, rec.digest, "", b"x")
    rep = Replayer(4096)
    rep.feed(data, U64, ReplayFilter(None, "/pub/", True))
    out = rep.take()
    assert out == event_frame(rec)
    assert b"\\u2028" in out and b"\\u2029" in out and b"\\u0085" in out
    assert "\u2028".encode() not in out and "\u2029".encode() not in out and "\x85".encode() not in out
    line = out.split(b"\n")[2]
    assert json.loads(line[len(b"data: "):])["path"] == path
