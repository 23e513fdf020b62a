"""engine.http.message: the header encoder spliced into h11-framed heads must be exactly as strict as h11."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings, strategies as st

from engine.http.message import cors_lines, encode_header_lines, splice_head


def h11_accepts(name: bytes, value: bytes) -> bool:
    try:
        h11.Response(status_code=200, headers=[(name, value)])
    except h11.LocalProtocolError:
        return False
    return True


@settings(max_examples=500)
@given(value=st.binary(max_size=12) | st.sampled_from([b" a", b"a ", b"a\tb", b"\ta", b"a\r\nx: y", b"\x7f", b""]))
def test_encode_header_lines_rejects_exactly_the_values_h11_rejects(value):
    ours = True
    try:
        encode_header_lines([(b"x-test", value)])
    except ValueError:
        ours = False
    assert ours == h11_accepts(b"x-test", value)


@pytest.mark.parametrize("name", [b"X-Upper", b"bad name", b"colon:", b"", b"content-length", b"connection",
                                  b"transfer-encoding", b"caf\xc3\xa9"])
def test_encode_header_lines_rejects_non_token_upper_case_and_framing_names(name):
    with pytest.raises(ValueError):
        encode_header_lines([(name, b"v")])


def parse_response(raw: bytes) -> tuple[h11.Response, bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    head = client.next_event()
    body = b""
    while True:
        event = client.next_event()
        if type(event) is h11.Data:
            body += event.data
        else:
            break
    assert type(event) is h11.EndOfMessage
    return head, body


@given(headers=st.lists(st.tuples(st.sampled_from([b"etag", b"event-id", b"location", b"x-a"]),
                                  st.from_regex(rb"\A[!-~]([ !-~]{0,20}[!-~])?\Z")), max_size=5),
       body=st.binary(max_size=40))
def test_spliced_head_parses_like_the_one_h11_frames_itself(headers, body):
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert type(server.next_event()) is h11.Request
    server.next_event()
    head = server.send(h11.Response(status_code=200, headers=[(b"content-length", b"%d" % len(body))]))
    raw = splice_head(head, encode_header_lines(headers)) + server.send(h11.Data(data=body)) + server.send(
        h11.EndOfMessage())
    parsed, got_body = parse_response(raw)
    assert got_body == body and parsed.status_code == 200
    assert [(n, v) for n, v in parsed.headers if n != b"content-length"] == headers
    assert server.our_state is h11.DONE


def test_splice_head_refuses_a_partial_head():
    with pytest.raises(ValueError):
        splice_head(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n", b"x: y\r\n")


def test_cors_lines_are_cached_per_origin_and_echo_only_listed_origins():
    allowed = frozenset([b"https://app.example"])
    assert cors_lines(None, frozenset()) == (b"access-control-allow-origin: *\r\n"
                                             b"access-control-expose-headers: ETag, Event-Id, Location\r\n")
    assert cors_lines(b"https://app.example", allowed).startswith(
        b"access-control-allow-origin: https://app.example\r\nvary: Origin\r\n")
    assert cors_lines(b"https://evil.example", allowed).startswith(b"vary: Origin\r\n")
    assert cors_lines(b"https://evil.example", allowed) is cors_lines(None, allowed)  # one cached value


@given(target=st.binary(max_size=30) | st.from_regex(rb"\A/[a-z0-9/%?=&.]{0,30}\Z"))
def test_parse_target_fast_path_gives_the_general_answer(target):
    from urllib.parse import parse_qsl

    from engine.errors import InvalidName
    from engine.http.message import parse_target
    from engine.names import percent_decode

    raw_path, _, raw_query = target.partition(b"?")
    try:
        expected = (percent_decode(raw_path),
                    parse_qsl(raw_query.decode("ascii"), keep_blank_values=True, errors="strict"))
    except (InvalidName, UnicodeDecodeError, ValueError):
        with pytest.raises(InvalidName):
            parse_target(target)
        return
    assert parse_target(target) == expected


def h11_head(status: int, length: int, response_close: bool, request: bytes) -> tuple[bytes, bool]:
    """What h11 writes for the head of Response(status, [content-length], [connection: close]) after `request`,
    and whether it then keeps the connection."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(request)
    assert type(server.next_event()) is h11.Request
    server.next_event()
    headers = [] if length < 0 else [(b"content-length", b"%d" % length)]
    if response_close:
        headers.append((b"Connection", b"close"))  # as the connection asks h11 for it (connection._head_event)
    reason = REASONS.get(status, b"")
    head = server.send(h11.Response(status_code=status, headers=headers, reason=reason))
    if length > 0:
        server.send(h11.Data(data=b"x" * length))
    server.send(h11.EndOfMessage())
    return head, server.our_state is h11.DONE


from engine.http.connection import REASONS  # noqa: E402
from engine.http.message import encode_response_head  # noqa: E402

KEEP = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


@pytest.mark.parametrize("length", [-1, 0, 7, 123456])
@pytest.mark.parametrize("close", [False, True])
def test_encode_response_head_is_the_head_h11_writes(length, close):
    for status in range(200, 600):
        if (status in (204, 304)) != (length < 0):
            continue  # no Content-Length is only for 204 and 304 (anything else would be chunked)
        head, _ = h11_head(status, length, close, KEEP)
        assert encode_response_head(status, REASONS.get(status, b""), length, close) + b"\r\n" == head, status


@pytest.mark.parametrize("request_bytes", [b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"])
def test_encode_response_head_with_close_is_what_h11_adds_for_a_closing_request(request_bytes):
    head, kept = h11_head(200, 5, False, request_bytes)
    assert not kept
    assert encode_response_head(200, b"OK", 5, True) + b"\r\n" == head
