"""Server-Sent Event frames (SPEC 3.2) and their HTTP/1.1 chunk framing, as pure functions over bytes.

A frame is encoded once per event and, wrapped in its chunk framing, the same bytes object goes to every
matching subscriber. Invariants: `data:` carries one line of compact JSON (a JSON string never contains a raw
newline, so a frame cannot be split by its content); every frame ends with a blank line; `chunk(b"")` is never
produced (an empty chunk would end the HTTP body).
"""

from __future__ import annotations

from base64 import b64encode

from ..jsontext import dumps as _dumps
from ..kinds import DEL, PUT
from ..names import _CROCKFORD_PAIRS as _PAIRS, CROCKFORD_ALPHABET as _CROCK

RETRY_MS = 2000
KEEPALIVE = b": keep-alive\n\n"
END_OF_BODY = b"0\r\n\r\n"
_KIND = {PUT: "PUT", DEL: "DEL"}


def chunk(frame: bytes) -> bytes:
    """HTTP/1.1 chunked framing of one or more frames."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)


def retry_frame(ms: int = RETRY_MS) -> bytes:
    return b"retry: %d\n\n" % ms


def json_string(text: str) -> str:
    """`text` as a JSON string literal; printable ASCII without quote or backslash needs no escaping."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return _dumps(text)


def event_data(record, inline_max: int | None = None) -> str:
    """The JSON `data:` of an event, with `body` when inline_max is given and the value qualifies."""
    if record.kind == PUT:
        text = (f'{{"seq":{record.seq},"user":"{record.user}","path":{json_string(record.path)},'
                f'"hash":"{b64encode(record.digest).decode("ascii")}","size":{len(record.value)},"ts":{record.ts}')
        if inline_max is not None and len(record.value) <= inline_max:
            try:
                body = bytes(record.value).decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                text += ',"body":' + _dumps(body)
        return text + "}"
    return f'{{"seq":{record.seq},"user":"{record.user}","path":{json_string(record.path)},"ts":{record.ts}}}'


def event_frame(record, inline_max: int | None = None) -> bytes:
    """`id:`/`event:`/`data:` frame of a log record. The hot path of history replay: one f-string."""
    seq = record.seq
    p = _PAIRS
    sid = (_CROCK[seq >> 60] + p[(seq >> 50) & 1023] + p[(seq >> 40) & 1023] + p[(seq >> 30) & 1023]
           + p[(seq >> 20) & 1023] + p[(seq >> 10) & 1023] + p[seq & 1023])
    if record.kind == PUT and inline_max is None:
        user = record.user
        return (f'id: {sid}.{user}\nevent: PUT\ndata: {{"seq":{seq},"user":"{user}","path":'
                f'{json_string(record.path)},"hash":"{b64encode(record.digest).decode("ascii")}",'
                f'"size":{len(record.value)},"ts":{record.ts}}}\n\n').encode("utf-8")
    return (f"id: {sid}.{record.user}\nevent: {_KIND[record.kind]}\n"
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
