"""The load tests' own SSE reader and checkers (loadtest/ssewire.py, compare.py, soak.py): fed split anywhere."""

import random

import pytest

from loadtest.compare import (ReplyCounter, bulk_check, frame_seq_and_id, histogram_percentile, loss_and_dups,
                              publish_request, split_frames, subscribe_request)
from loadtest.soak import matches, slope_per_minute
from loadtest.ssewire import ChunkedDecoder, SeqChecker, SSEParser, Stream, crockford_id, crockford_seq

U = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"


def _frame(seq: int) -> bytes:
    return (f"id: {crockford_id(seq)}.{U}\nevent: PUT\ndata: "
            f'{{"seq":{seq},"user":"{U}","path":"/pub/a/{seq}","ts":1700000000000}}\n\n').encode()


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def _splits(data: bytes, rng: random.Random):
    i = 0
    while i < len(data):
        n = rng.randint(1, 40)
        yield data[i:i + n]
        i += n


def test_crockford_round_trip_matches_spec_width():
    assert crockford_id(1) == "0000000000001"
    assert crockford_seq(f"{crockford_id(1234567)}.{U}") == 1234567
    assert crockford_seq("000000000016J") == 1234


def test_stream_parses_chunked_sse_split_anywhere():
    body = _chunked([b"retry: 2000\n\n", _frame(1) + _frame(2), b": keep-alive\n\n", _frame(3)])
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    for seed in range(20):
        s = Stream()
        evs = [e for part in _splits(raw, random.Random(seed)) for e in s.feed(part)]
        assert [e.json()["seq"] for e in evs] == [1, 2, 3]
        assert evs[2].id.startswith("0000000000003.")
        assert s.finished and s.sse.retry == 2000


def test_stream_rejects_error_status():
    with pytest.raises(ValueError, match="HTTP 400"):
        Stream().feed(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}')


def test_sse_parser_crlf_cr_multiline_data_and_comments():
    p = SSEParser()
    evs = p.feed(b"event: gap\r\ndata: {\"from\": 1,\r\ndata:  \"to\": 5}\r\n\r\n: ping\rid: 7\revent: end\rdata: x\r\r\n")
    assert [(e.event, e.data) for e in evs] == [("gap", '{"from": 1,\n "to": 5}'), ("end", "x")]
    assert evs[1].id == "7"


def test_sse_parser_keeps_split_crlf_and_utf8():
    p = SSEParser()
    data = "data: caf\u00e9\r\n\r\n".encode()
    evs = []
    for i in range(len(data)):
        evs += p.feed(data[i:i + 1])
    assert [e.data for e in evs] == ["caf\u00e9"]


def test_chunked_decoder_extensions_and_bad_framing():
    d = ChunkedDecoder()
    assert d.feed(b"3;ext=1\r\nabc\r\n0\r\n\r\n") == b"abc" and d.finished
    with pytest.raises(ValueError):
        ChunkedDecoder().feed(b"3\r\nabcX\r\n")


def test_seq_checker_gap_duplicate_and_gap_frame():
    c = SeqChecker()
    assert c.observe(10) == [] and c.observe(11) == []
    assert c.observe(13) == ["gap: seqs 12..12 missing"]
    assert "duplicate" in c.observe(13)[0]
    assert c.gap(14, 20) == [] and c.observe(21) == [] and c.gaps_named == 7
    assert c.gap(30, 31) == ["gap frame from 30, expected it from 22"]


def test_bulk_check_counts_and_contiguity():
    data = _frame(5) + _frame(6) + _frame(7)
    assert bulk_check(data, 5) == (3, 5, 7, True)
    assert bulk_check(_frame(5) + _frame(7), 5)[3] is False
    assert bulk_check(_frame(6), 5)[3] is False
    assert bulk_check(b"retry: 2000\n\n", 1) == (0, 0, 0, True)


def test_split_frames_and_ids_for_each_peer_format():
    frames, rest = split_frames(b"\r\n1f\r\nid: 1700000000:3\nevent: PUT\ndata: {\"seq\":4}\n\nid: 9", b"\n\n")
    assert frame_seq_and_id(frames[0]) == (4, b"1700000000:3") and rest == b"id: 9"
    resp = b'*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$9\r\n{"seq":12}\r\n'
    frames, rest = split_frames(resp + resp[:10], b"}\r\n")
    assert [frame_seq_and_id(f)[0] for f in frames] == [12] and rest == resp[:10]


def test_reply_counter_http_and_redis_split_anywhere():
    http = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n" * 50 + b"HTTP/1.1 500 Oops\r\n\r\n"
    redis = b":1000\r\n" * 50 + b"-ERR no\r\n"
    for kind, data in (("nchan", http), ("redis", redis)):
        for seed in range(5):
            r = ReplyCounter(kind)
            for part in _splits(data, random.Random(seed)):
                r.feed(part)
            assert (r.ok, r.bad) == (50, 1)


def test_requests_are_well_formed():
    assert subscribe_request("homestream", b"00000000000A1.x").startswith(b"GET /subscribe?p=*/pub/bench/* ")
    assert b"Last-Event-ID: 00000000000A1.x\r\n" in subscribe_request("homestream", b"00000000000A1.x")
    assert subscribe_request("redis") == b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n"
    req = publish_request("nchan", 3)
    head, body = req.split(b"\r\n\r\n", 1)
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body) and b'"seq":3,' in body


def test_histogram_percentile_and_loss():
    assert histogram_percentile({10: 98, 500: 2}, 50) == 1.0
    assert histogram_percentile({10: 98, 500: 2}, 99) == 50.0
    assert loss_and_dups([1, 2, 2, 4, 9], range(1, 5)) == {"lost": 1, "duplicated": 1, "unexpected": 1}


@pytest.mark.parametrize("pattern,user,path,want", [
    ("*", U, "/pub/a", True), ("*", U, "/priv/a", False),
    (f"{U}/*", U, "/pub/x/y", True), (f"{U}/*", "x" * 52, "/pub/x/y", False),
    ("*/pub/soak/posts/*", U, "/pub/soak/posts/1", True), ("*/pub/soak/posts/*", U, "/pub/soak/postsX", False),
    (f"{U}/pub/p.json", U, "/pub/p.json", True), (f"{U}/pub/p.json", U, "/pub/p.jsonx", False),
])
def test_soak_reference_matcher(pattern, user, path, want):
    assert matches(pattern, user, path) is want


def test_slope_per_minute():
    assert slope_per_minute([0, 60, 120], [5, 6, 7]) == pytest.approx(1.0)
    assert slope_per_minute([1], [1]) == 0.0
