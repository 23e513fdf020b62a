"""The worker<->writer framing (engine/workers/channel.py): round trips, partial reads, the frame limit."""

from __future__ import annotations

import pytest

from engine.api.writes import APPEND_OP, DELETE_OP, PUT_OP, WriteOp, WriteResult
from engine.workers import channel

USER = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"


@pytest.mark.parametrize("op", [
    WriteOp(PUT_OP, USER, "/pub/é/a b", b"\x00\xff" * 10, "text/plain; charset=utf-8", (b"r" * 16, 1763800000)),
    WriteOp(DELETE_OP, USER, "/priv/x"),
    WriteOp(APPEND_OP, USER, "/pub/items/", b"", "application/json", None),
])
def test_a_write_op_survives_the_channel_byte_for_byte(op):
    frames = channel.Decoder(1 << 20).feed(channel.encode_write(7, op))
    assert len(frames) == 1
    request_id, kind, fields = frames[0]
    assert (request_id, kind) == (7, channel.OP_WRITE)
    assert channel.decode_write(fields) == op


def test_results_errors_and_commits_round_trip_fed_one_byte_at_a_time():
    result = WriteResult(201, 1 << 40, b"d" * 32, "/pub/items/" + "y" * 52, USER)
    data = (channel.encode_result(3, result) + channel.encode_error(4, 401, "replayed", "déjà vu")
            + channel.encode_commit(99))
    decoder = channel.Decoder(1 << 20)
    frames = []
    for i in range(len(data)):
        frames += decoder.feed(data[i:i + 1])
    assert [(f[0], f[1]) for f in frames] == [(3, channel.OP_RESULT), (4, channel.OP_ERROR), (0, channel.OP_COMMIT)]
    assert channel.decode_result(frames[0][2]) == result
    assert channel.decode_error(frames[1][2]) == (401, "replayed", "déjà vu")
    assert channel.from_u64(frames[2][2][0]) == 99


def test_a_frame_at_the_limit_passes_and_one_byte_over_is_refused():
    op = WriteOp(PUT_OP, USER, "/pub/a", b"x" * 1000, "", None)
    frame = channel.encode_write(1, op)
    length = len(frame) - 4
    assert len(channel.Decoder(length).feed(frame)) == 1
    with pytest.raises(ValueError):
        channel.Decoder(length - 1).feed(frame)


def test_an_unknown_write_kind_is_refused():
    fields = [b"rename", USER.encode(), b"/pub/a", b"", b"", b"", channel.u64(0)]
    with pytest.raises(ValueError):
        channel.decode_write(fields)
