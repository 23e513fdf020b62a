"""What a relay keeps of one upstream event, and how it is written to its subscribers. Pure functions.

Each upstream event is one version 2 log record (engine/log/record.py): the header carries the relay's own seq
and clock, the event's kind, user, path and the upstream's content hash; the value is the inline body when the
upstream gave one; the extension block (`Meta`, little-endian) says where the event came from:

  off  size  field
    0     8  cursor   u64  where to resume this upstream after this record: homestream, the upstream's seq;
                           pubky, the cursor before this record's page (with `index`); gap, the last missing seq
    8     8  uid      u64  homestream: the upstream's seq; pubky: the event's exact cursor, 0 if not known
   16     8  a        u64  PUT/DEL: the upstream's ts (unix ms); GAP: first missing upstream seq
   24     8  b        u64  PUT: the upstream's size of the value; GAP: last missing upstream seq
   32     4  index    u32  pubky: 1-based position of the event in its page; else 0
   36     1  flags    u8   PUBKY, NO_HASH (hash and size unknown), BODY (value is the inline body), PAGE_END
   37     1  name_len u8   then the upstream's name, ASCII
Invariants: a relay record's extension decodes with `Meta.decode`; the cursor an upstream resumes from is
`resume_point(meta)` of its newest record, so appending an event and advancing its cursor are one write; a GAP
record's user is GAP_USER and its path "/", which no pattern of a subscriber matches (the relay's hub delivers
gaps to every subscriber itself).
"""

from __future__ import annotations

import json
import struct
from base64 import b64encode

from ..http.sse import json_string
from ..log.record import DEL, GAP, PUT
from ..names import encode_seq, encode_user

EXT = struct.Struct("<QQQQIBB")
PUBKY, NO_HASH, BODY, PAGE_END = 1, 2, 4, 8
GAP_USER = encode_user(bytes(32))
GAP_PATH = "/"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_KIND = {PUT: "PUT", DEL: "DEL"}


class Meta:
    __slots__ = ("cursor", "uid", "a", "b", "index", "flags", "name")

    def __init__(self, name: str, cursor: int, uid: int = 0, a: int = 0, b: int = 0, index: int = 0,
                 flags: int = 0):
        self.name, self.cursor, self.uid, self.a, self.b, self.index, self.flags = (
            name, cursor, uid, a, b, index, flags)

    def encode(self) -> bytes:
        name = self.name.encode("ascii")
        return EXT.pack(self.cursor, self.uid, self.a, self.b, self.index, self.flags, len(name)) + name

    @classmethod
    def decode(cls, ext) -> "Meta":
        cursor, uid, a, b, index, flags, nlen = EXT.unpack_from(ext, 0)
        return cls(str(ext[EXT.size:EXT.size + nlen], "ascii"), cursor, uid, a, b, index, flags)

    @property
    def pubky(self) -> bool:
        return bool(self.flags & PUBKY)

    def upstream_id(self, user: str) -> str:
        """The upstream's event id (homestream) or decimal cursor (pubky; `<page cursor>+<index>` when the
        page skipped cursors and this event's own is not known)."""
        if not self.flags & PUBKY:
            return f"{encode_seq(self.uid)}.{user}"
        return str(self.uid) if self.uid else f"{self.cursor}+{self.index}"

    def __repr__(self) -> str:
        return (f"Meta({self.name!r}, cursor={self.cursor}, uid={self.uid}, a={self.a}, b={self.b}, "
                f"index={self.index}, flags={self.flags})")


def meta_name(ext) -> str:
    """Just the upstream's name of an extension block (what recovery needs of most records)."""
    return str(ext[EXT.size:EXT.size + ext[EXT.size - 1]], "ascii")


def resume_point(meta: Meta) -> tuple[int, int]:
    """(cursor, events to skip) to follow an upstream after the record `meta` came from."""
    if meta.flags & PUBKY and not meta.flags & PAGE_END:
        return meta.cursor, meta.index
    if meta.flags & PUBKY:
        return meta.uid, 0
    return meta.cursor, 0


def relay_frame(record, inline_max: int | None = None) -> bytes:
    """The SSE frame of a relay record: the homeserver's frame (engine/http/sse.py) with the relay's seq and
    id, the upstream's hash, size and ts, plus "upstream" and "upstream_id"; a GAP record is `event: gap`."""
    meta = Meta.decode(record.ext)
    seq = record.seq
    sid = encode_seq(seq)
    name = json_string(meta.name)
    if record.kind == GAP:
        return (f'id: {sid}\nevent: gap\ndata: {{"upstream":{name},"from":{meta.a},"to":{meta.b}}}\n\n'
                ).encode("utf-8")
    user = record.user
    text = f'{{"seq":{seq},"user":"{user}","path":{json_string(record.path)}'
    if record.kind == PUT and not meta.flags & NO_HASH:
        text += f',"hash":"{b64encode(record.digest).decode("ascii")}","size":{meta.b}'
    text += f',"ts":{meta.a},"upstream":{name},"upstream_id":"{meta.upstream_id(user)}"'
    if (inline_max is not None and record.kind == PUT and meta.flags & BODY
            and len(record.value) <= inline_max):
        try:
            text += ',"body":' + _dumps(bytes(record.value).decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return f"id: {sid}.{user}\nevent: {_KIND[record.kind]}\ndata: {text}}}\n\n".encode("utf-8")
