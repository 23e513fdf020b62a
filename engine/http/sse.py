"""Server-Sent Event frames (SPEC 3.2) and their HTTP/1.1 chunk framing, as pure functions over bytes.

A frame is encoded once per event and, wrapped in its chunk framing, the same bytes object goes to every
matching subscriber. Invariants: `data:` carries one line of compact JSON (a JSON string never contains a raw
newline, so a frame cannot be split by its content); every frame ends with a blank line; `chunk(b"")` is never
produced (an empty chunk would end the HTTP body).
"""

from __future__ import annotations

import json

from ..log.record import DEL, PUT
from ..names import encode_content_hash, encode_seq

RETRY_MS = 2000
KEEPALIVE = b": keep-alive\n\n"
END_OF_BODY = b"0\r\n\r\n"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_KIND = {PUT: "PUT", DEL: "DEL"}


def chunk(frame: bytes) -> bytes:
    """HTTP/1.1 chunked framing of one or more frames."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)


def retry_frame(ms: int = RETRY_MS) -> bytes:
    return b"retry: %d\n\n" % ms


def event_data(record, inline_max: int | None = None) -> str:
    """The JSON `data:` of an event, with `body` when inline_max is given and the value qualifies."""
    if record.kind == PUT:
        text = (f'{{"seq":{record.seq},"user":"{record.user}","path":{_dumps(record.path)},'
                f'"hash":"{encode_content_hash(record.digest)}","size":{record.size},"ts":{record.ts}')
        if inline_max is not None and record.size <= inline_max:
            try:
                body = bytes(record.value).decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                text += ',"body":' + _dumps(body)
        return text + "}"
    return f'{{"seq":{record.seq},"user":"{record.user}","path":{_dumps(record.path)},"ts":{record.ts}}}'


def event_frame(record, inline_max: int | None = None) -> bytes:
    """`id:`/`event:`/`data:` frame of a log record."""
    return (f"id: {encode_seq(record.seq)}.{record.user}\nevent: {_KIND[record.kind]}\n"
            f"data: {event_data(record, inline_max)}\n\n").encode("utf-8")


def named_frame(event: str, data: object, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {_dumps(data)}\n\n".encode("utf-8")


def gap_frame(first_missing: int, last_missing: int) -> bytes:
    return named_frame("gap", {"from": first_missing, "to": last_missing})


def end_frame(reason: str, last_id: str | None) -> bytes:
    return named_frame("end", {"reason": reason, "last": last_id})


def text_frame(event: str, lines: list[str], event_id: str | None = None) -> bytes:
    """A frame whose data is several plain-text `data:` lines (the pubky /events-stream format)."""
    head = f"id: {event_id}\n" if event_id else ""
    body = "".join(f"data: {line}\n" for line in lines)
    return f"{head}event: {event}\n{body}\n".encode("utf-8")


def parse_frames(text: str) -> list[dict[str, str]]:
    """Parse SSE text into frames (field -> value, `data` lines joined by newlines). Used by clients and tests."""
    frames = []
    current: dict[str, str] = {}
    for line in text.split("\n"):
        if line == "":
            if current:
                frames.append(current)
                current = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data" and "data" in current:
            current["data"] += "\n" + value
        else:
            current[name] = value
    return frames
