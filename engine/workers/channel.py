"""The framing of the local channel between workers and the writer: pure functions over bytes.

A frame: u32 length of what follows, u32 request id, u8 op, then fields, each a u32 length and its bytes.

  worker -> writer   OP_WRITE   (kind, user, path, body, content type, replay digest, replay timestamp)
  writer -> worker   OP_RESULT  (status, seq, digest, path)  the write is appended; it is durable once the
                                                            cursor's durable seq reaches seq
                     OP_ERROR   (status, code, message)      nothing was written
                     OP_COMMIT  (durable seq), id 0           the cursor moved: catch up
                     OP_STATE   (tag, payload), id 0          reserved for operational notices

Invariants: a decoder never yields a partial frame and refuses a frame longer than its limit (ValueError:
the channel is then closed, never resynchronised); integers travel as u64 little-endian.
"""

from __future__ import annotations

import struct

from ..api.writes import WriteOp, WriteResult

OP_WRITE = 1
OP_RESULT = 2
OP_ERROR = 3
OP_COMMIT = 4
_HEAD = struct.Struct("<IIB")
_LEN = struct.Struct("<I")
_U64 = struct.Struct("<Q")
KINDS = ("put", "delete", "append")


def encode(request_id: int, op: int, fields: tuple[bytes, ...] | list[bytes]) -> bytes:
    parts = []
    for f in fields:
        parts.append(_LEN.pack(len(f)))
        parts.append(f)
    payload = b"".join(parts)
    return _HEAD.pack(len(payload) + 5, request_id, op) + payload


class Decoder:
    """Feed bytes, get whole frames: (request id, op, [fields])."""

    def __init__(self, max_frame: int):
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, list[bytes]]]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            length = _LEN.unpack_from(buf, pos)[0]
            if length < 5 or length > self.max_frame:
                raise ValueError(f"channel frame of {length} bytes")
            if n - pos - 4 < length:
                break
            _l, request_id, op = _HEAD.unpack_from(buf, pos)
            end = pos + 4 + length
            p = pos + 9
            fields = []
            while p < end:
                flen = _LEN.unpack_from(buf, p)[0]
                p += 4
                if p + flen > end:
                    raise ValueError("channel field past the end of its frame")
                fields.append(bytes(buf[p:p + flen]))
                p += flen
            out.append((request_id, op, fields))
            pos = end
        if pos:
            del buf[:pos]
        return out


def u64(value: int) -> bytes:
    return _U64.pack(value)


def from_u64(data: bytes) -> int:
    return _U64.unpack(data)[0]


def encode_write(request_id: int, op: WriteOp) -> bytes:
    digest, ts = op.replay if op.replay is not None else (b"", 0)
    return encode(request_id, OP_WRITE, (op.kind.encode(), op.user.encode("ascii"), op.path.encode("utf-8"),
                                         op.body, op.content_type.encode("utf-8"), digest, u64(ts)))


def decode_write(fields: list[bytes]) -> WriteOp:
    kind, user, path, body, ctype, digest, ts = fields
    k = kind.decode()
    if k not in KINDS:
        raise ValueError(f"unknown write {k!r}")
    return WriteOp(k, user.decode("ascii"), path.decode("utf-8"), body, ctype.decode("utf-8"),
                   (digest, from_u64(ts)) if digest else None)


def encode_result(request_id: int, result: WriteResult) -> bytes:
    return encode(request_id, OP_RESULT, (u64(result.status), u64(result.seq), result.digest,
                                          result.path.encode("utf-8"), result.user.encode("ascii")))


def decode_result(fields: list[bytes]) -> WriteResult:
    status, seq, digest, path, user = fields
    return WriteResult(from_u64(status), from_u64(seq), digest, path.decode("utf-8"), user.decode("ascii"))


def encode_error(request_id: int, status: int, code: str, message: str) -> bytes:
    return encode(request_id, OP_ERROR, (u64(status), code.encode(), message.encode("utf-8")))


def decode_error(fields: list[bytes]) -> tuple[int, str, str]:
    status, code, message = fields
    return from_u64(status), code.decode(), message.decode("utf-8")


def encode_commit(durable_seq: int) -> bytes:
    return encode(0, OP_COMMIT, (u64(durable_seq),))
