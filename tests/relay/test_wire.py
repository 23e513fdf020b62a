"""engine/relay/wire.py: the chunked decoder (any split of the input), the head parser, and open_stream against a
scripted server (chunked, sized, until-close, refused, torn)."""

import asyncio

import pytest
from hypothesis import given, strategies as st

from engine.relay.wire import ChunkedDecoder, StreamRefused, open_stream, parse_head


def chunked(parts: list[bytes], ext: bool = False) -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";x=1" if ext else b"", p) for p in parts if p)
    return out + b"0\r\nTrailer: y\r\n\r\n"


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.lists(st.integers(1, 50), max_size=40),
       st.booleans())
def test_decoder_yields_exactly_the_data_whatever_the_split(parts, cuts, ext):
    wire = chunked(parts, ext)
    dec = ChunkedDecoder()
    got = []
    pos = 0
    for cut in cuts:
        got += dec.feed(wire[pos:pos + cut])
        pos += cut
    got += dec.feed(wire[pos:])
    assert b"".join(got) == b"".join(parts) and dec.done


def test_decoder_stops_at_the_last_chunk_and_refuses_bad_framing():
    dec = ChunkedDecoder()
    assert dec.feed(b"3\r\nabc\r\n0\r\n\r\nGARBAGE") == [b"abc"] and dec.done
    for bad in (b"zz\r\n", b"0x3\r\nabc\r\n", b"+3\r\nabc\r\n", b"3\r\nabcXY", b"1_0\r\n"):
        with pytest.raises(ValueError):
            ChunkedDecoder().feed(bad)
    with pytest.raises(ValueError, match="too long"):
        ChunkedDecoder().feed(b"1" * 1025)
    assert ChunkedDecoder().feed(b"1" * 1024) == []  # at the limit: still waiting for the line end


def test_parse_head():
    status, headers = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A:  b ")
    assert status == 200 and headers == {"content-type": "text/event-stream", "x-a": "b"}
    for bad in (b"HTTP/2 200", b"HTTP/1.1 2000 X", b"ICY 200 OK", b"HTTP/1.1 200 OK\r\nno colon"):
        with pytest.raises(ValueError):
            parse_head(bad)


def serve_once(answer: bytes):
    """A one-shot server writing `answer` (then closing); returns (url, requests seen)."""
    seen = []

    async def handle(reader, writer):
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    return handle, seen


async def collect(answer: bytes, idle: float = 5.0):
    handle, seen = serve_once(answer)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        out = [d async for d in open_stream(f"http://127.0.0.1:{port}", "/subscribe", [("p", "*"), ("after", "5")],
                                            idle_timeout=idle)]
    finally:
        server.close()
    return b"".join(out), seen


async def test_open_stream_reads_chunked_sized_and_until_close_bodies_and_sends_the_query():
    body, seen = await collect(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked([b"ab", b"cd"]))
    assert body == b"abcd"
    assert seen[0].startswith(b"GET /subscribe?p=%2A&after=5 HTTP/1.1\r\nHost: 127.0.0.1:")
    body, _ = await collect(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyzEXTRA")
    assert body == b"xyz"
    body, _ = await collect(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
    assert body == b"until close"


async def test_open_stream_refused_torn_and_silent_answers_raise():
    with pytest.raises(StreamRefused) as refused:
        await collect(b'HTTP/1.1 400 Bad\r\nContent-Length: 17\r\n\r\n{"error":"x"}....')
    assert refused.value.status == 400 and '{"error":"x"}' in str(refused.value)
    with pytest.raises(ConnectionResetError):
        await collect(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
    with pytest.raises(ConnectionResetError):
        await collect(b"")
    with pytest.raises(ValueError):
        await collect(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnothex\r\n")

    async def silent(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(2)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError):
            async for _ in open_stream(f"http://127.0.0.1:{port}", "/s", [], idle_timeout=0.2):
                pass
    finally:
        server.close()
