"""Auto-resuming event streams over `GET /subscribe` (SPEC 3): async (`AsyncStream`) and sync (`Stream`).

What the caller gets is a sequence of typed values, `Event`, `Gap` and `End`, with these guarantees:
- never a duplicate: an event whose seq is <= the last yielded seq is dropped (and a gap already covered);
- no silent hole across reconnects: every reconnect sends `Last-Event-ID` = the last yielded position, so the
  server replays from the log; what the server itself could not keep arrives as a `Gap`;
- reconnects by itself after a network error, a server restart or `end` with reason shutdown/evicted, with
  exponential back-off and jitter whose base is the server's `retry:` (1 s until the server names one);
  `end` with reason limit/history (and 4xx answers other than 408/429) end the iteration;
- with `state=FILE` the position is written atomically (temp file + rename) when the caller comes back for the
  next value, i.e. after it has handled the previous one, and on `commit()`; a new stream with the same file
  resumes exactly after the last value it handled.
The incremental SSE parser lives here (the server's `engine.http.sse.parse_frames` wants whole text): it keeps
partial lines across network chunks and accepts CRLF, LF and CR line ends, as the SSE standard says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Union

import httpx

from ..names import event_id as make_event_id
from . import refs
from .errors import ApiError, BadReference, ClientFailure, ConnectionFailed

log = logging.getLogger("homestream.client")

RECONNECT_ON = ("shutdown", "evicted")
FINAL_END = ("limit", "history")
DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 30.0
DEFAULT_IDLE_TIMEOUT = 45.0  # the server sends ": keep-alive" after 15 s of silence
HEALTHY_CONNECTION = 10.0  # a connection that lived this long resets the back-off
MAX_LINE = 32 * 1024 * 1024


# ---- typed values ----

@dataclass(frozen=True)
class Event:
    """A PUT or DEL event. `body` is the stored text when the stream asked for inline bodies and got one."""

    id: str
    seq: int
    kind: str  # "PUT" or "DEL"
    user: str
    path: str
    hash: str | None
    size: int | None
    ts: int  # server clock at append, unix milliseconds
    body: str | None = None
    data: str = field(default="", repr=False, compare=False)  # the frame's JSON text, as the server sent it

    @property
    def uri(self) -> str:
        return refs.uri(self.user, self.path)


@dataclass(frozen=True)
class Gap:
    """Events from_seq..to_seq (inclusive) were dropped by retention before this stream could read them.

    From a relay (SPEC 5.4), `upstream` names the upstream whose history no longer reached the relay's cursor,
    and from_seq..to_seq are that upstream's seqs, not this stream's."""

    from_seq: int
    to_seq: int
    upstream: str | None = None


@dataclass(frozen=True)
class End:
    """The server ended the stream on purpose; `last` is the id of the last event that connection delivered."""

    reason: str
    last: str | None


Value = Union[Event, Gap, End]


# ---- SSE parsing ----

class SSEParser:
    """Incremental Server-Sent Events parser: feed bytes as they come, get complete frames (dicts)."""

    def __init__(self) -> None:
        self._buf = b""
        self._skip_lf = False
        self._frame: dict[str, str] = {}
        self._data: list[str] = []
        self._started = False

    def feed(self, chunk: bytes) -> list[dict[str, str]]:
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk (and its line)
        if not chunk:
            return []
        self._skip_lf = chunk.endswith(b"\r")
        data = (self._buf + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = data.split(b"\n")
        if len(rest) > MAX_LINE:
            raise ValueError(f"SSE line longer than {MAX_LINE} bytes")
        self._buf = rest
        frames = []
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if not self._started:
                self._started = True
                if line.startswith("\ufeff"):
                    line = line[1:]
            if line == "":
                if self._data or self._frame:
                    frame = dict(self._frame)
                    if self._data:
                        frame["data"] = "\n".join(self._data)
                    frames.append(frame)
                self._frame, self._data = {}, []
                continue
            if line.startswith(":"):
                continue  # comment (": keep-alive")
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name in ("id", "event", "retry"):
                if name == "id" and "\x00" in value:
                    continue
                self._frame[name] = value
        return frames


# ---- the position and the frame → value logic shared by both streams ----

class StateFile:
    """The last handled position of a stream, one line of text, replaced atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def load(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BadReference(f"{self.path}: cannot read state file: {exc.strerror or exc}") from None
        if not text:
            return None
        try:
            refs.check_resume_point(text)
        except BadReference as exc:
            raise BadReference(f"{self.path}: not a stream position ({exc.message})") from None
        return text

    def save(self, position: str) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(position + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise


class _Core:
    """Everything about a subscription except the I/O: request, frame handling, dedupe, back-off, position."""

    def __init__(self, client: Any, patterns: list[str] | str, *, after: str | int | None = None,
                 inline: bool = False, live: bool = True, limit: int | None = None,
                 state: str | os.PathLike | None = None, sign: bool | None = None,
                 reconnect: bool = True, reconnect_on_end: bool = True,
                 base_delay: float = DEFAULT_BASE_DELAY, max_delay: float = DEFAULT_MAX_DELAY,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, max_attempts: int | None = None,
                 wait_first: bool = True):
        self.client = client
        self.patterns = refs.check_patterns(patterns)
        if len(self.patterns) > 64:
            raise BadReference(f"at most 64 patterns per stream, got {len(self.patterns)}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise BadReference(f"limit must be a positive integer, not {limit!r}")
        self.inline, self.live, self.limit = inline, live, limit
        self.state = StateFile(state) if state is not None else None
        self.sign = (client.signer is not None) if sign is None else sign
        if self.sign and client.signer is None:
            raise BadReference("a signed stream needs a key")
        self.reconnect, self.reconnect_on_end = reconnect, reconnect_on_end
        self.base_delay, self.max_delay = base_delay, max_delay
        self.server_retry: float | None = None
        self.idle_timeout = idle_timeout
        self.max_attempts = max_attempts
        self.wait_first = wait_first  # False: fail at once if the very first connection cannot be made
        self.connected_once = False
        self.delivered = 0
        saved = self.state.load() if self.state else None
        start = refs.check_resume_point(saved if saved is not None else after)
        # position of the last yielded value: seq (None = nothing yet and live only) and its id text
        self.seq: int | None = start[0] if start else None
        self.last_id: str | None = (saved or (start[1] if start else None)) if start else None
        self._committed = self.position

    # -- position --

    @property
    def position(self) -> str | None:
        """The resume point: the last yielded event id, or a decimal seq (after a gap, or from `after=<n>`)."""
        if self.last_id is not None:
            return self.last_id
        return str(self.seq) if self.seq is not None else None

    def commit(self) -> None:
        pos = self.position
        if self.state is not None and pos is not None and pos != self._committed:
            self.state.save(pos)
            self._committed = pos

    # -- request --

    def url(self) -> str:
        return self.client.url + "/subscribe"

    def params(self) -> list[tuple[str, str]]:
        params = [("p", p) for p in self.patterns]
        if self.inline:
            params.append(("inline", "1"))
        if not self.live:
            params.append(("live", "false"))
        if self.limit is not None:
            params.append(("limit", str(self.limit - self.delivered)))
        return params

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        pos = self.position
        if pos is not None:
            headers["Last-Event-ID"] = pos
        if self.sign:
            headers["Authorization"] = self.client.signer.authorization("GET", "/subscribe", b"")
        return headers

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(10.0, read=self.idle_timeout)

    # -- frames --

    def handle(self, frame: dict[str, str]) -> Value | None:
        """The value a frame stands for, or None (dropped: duplicate, retry, comment, unknown)."""
        retry = frame.get("retry")
        if retry is not None and retry.isdigit():
            self.server_retry = int(retry) / 1000.0
        kind = frame.get("event", "message")
        data = frame.get("data")
        if data is None:
            return None
        if kind in ("PUT", "DEL"):
            doc = json.loads(data)
            seq = int(doc["seq"])
            if self.seq is not None and seq <= self.seq:
                return None
            eid = frame.get("id") or make_event_id(seq, doc["user"])
            ev = Event(eid, seq, kind, doc["user"], doc["path"], doc.get("hash"), doc.get("size"),
                       int(doc.get("ts", 0)), doc.get("body"), data)
            self.seq, self.last_id = seq, eid
            self.delivered += 1
            return ev
        if kind == "gap":
            doc = json.loads(data)
            lo, hi = int(doc["from"]), int(doc["to"])
            if doc.get("upstream") is not None:
                return self._upstream_gap(frame, str(doc["upstream"]), lo, hi)
            if self.seq is not None:
                if hi <= self.seq:
                    return None
                lo = max(lo, self.seq + 1)
            self.seq, self.last_id = hi, None
            return Gap(lo, hi)
        if kind == "end":
            doc = json.loads(data)
            return End(str(doc.get("reason")), doc.get("last"))
        return None

    def _upstream_gap(self, frame: dict[str, str], upstream: str, lo: int, hi: int) -> Gap | None:
        """A relay's gap in one of its upstreams: a record of the relay's own stream, at the seq of its `id`."""
        eid = frame.get("id")
        if eid:
            seq = refs.check_resume_point(eid)[0]
            if self.seq is not None and seq <= self.seq:
                return None
            self.seq, self.last_id = seq, eid
        return Gap(lo, hi, upstream)

    def final(self, value: Value) -> bool:
        """True when this value ends the iteration."""
        if isinstance(value, End):
            return value.reason in FINAL_END or not self.reconnect_on_end or not self.reconnect
        return self.limit is not None and self.delivered >= self.limit

    # -- back-off --

    def delay(self, attempt: int) -> float:
        base = self.server_retry if self.server_retry is not None else self.base_delay
        ceiling = min(self.max_delay, base * (2 ** min(attempt, 30)))
        return ceiling * random.uniform(0.5, 1.0)

    def error_is_final(self, exc: ApiError) -> bool:
        return 400 <= exc.status < 500 and exc.status not in (408, 429)

    def give_up(self, attempt: int, reason: str) -> None:
        if (not self.reconnect or (self.max_attempts is not None and attempt >= self.max_attempts)
                or (not self.connected_once and not self.wait_first)):
            raise ConnectionFailed(f"event stream from {self.client.url}: {reason}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_NETWORK_ERRORS = (httpx.HTTPError, httpx.StreamError, OSError, ValueError, KeyError, TypeError)


class AsyncStream:
    """`async for value in client.subscribe(...)`: Event, Gap and End values; see the module docstring."""

    def __init__(self, client: Any, patterns: list[str] | str, **kw: Any):
        self.core = _Core(client, patterns, **kw)
        self._gen = self._run()

    @property
    def last_id(self) -> str | None:
        return self.core.position

    @property
    def last_seq(self) -> int | None:
        return self.core.seq

    def commit(self) -> None:
        """Write the position of the last yielded value to the state file now."""
        self.core.commit()

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> Value:
        self.core.commit()  # the caller is back: it has handled what it got before
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _run(self) -> AsyncIterator[Value]:
        core, http = self.core, self.client_http()
        attempt = 0
        while True:
            reason = "the server closed the stream"
            started = time.monotonic()
            reconnect_now = False
            try:
                async with http.stream("GET", core.url(), params=core.params(), headers=core.headers(),
                                       timeout=core.timeout()) as resp:
                    if resp.status_code != 200:
                        err = ApiError.from_response(resp.status_code, await resp.aread(), dict(resp.headers))
                        if core.error_is_final(err):
                            raise err
                        raise _Retry(err)
                    core.connected_once = True
                    parser = SSEParser()
                    async for chunk in resp.aiter_raw():
                        for frame in parser.feed(chunk):
                            value = core.handle(frame)
                            if value is None:
                                continue
                            if not isinstance(value, End):
                                attempt = 0
                            yield value
                            if core.final(value):
                                return
                            if isinstance(value, End):
                                reason = f"the server ended the stream ({value.reason})"
                                reconnect_now = value.reason == "evicted"
                                break
                        else:
                            continue
                        break
            except ClientFailure:
                raise
            except _Retry as exc:
                reason = _reason(exc.error)
            except _NETWORK_ERRORS as exc:
                reason = _reason(exc)
            if time.monotonic() - started > HEALTHY_CONNECTION:
                attempt = 0
            core.give_up(attempt, reason)
            delay = 0.0 if reconnect_now and attempt == 0 else core.delay(attempt)
            attempt += 1
            log.info("%s; reconnecting in %.1f s after %s", reason, delay, core.position or "(live)")
            await asyncio.sleep(delay)

    def client_http(self) -> httpx.AsyncClient:
        return self.core.client.http


class Stream:
    """`for value in client.subscribe(...)`: the synchronous twin of AsyncStream."""

    def __init__(self, client: Any, patterns: list[str] | str, **kw: Any):
        self.core = _Core(client, patterns, **kw)
        self._gen = self._run()

    @property
    def last_id(self) -> str | None:
        return self.core.position

    @property
    def last_seq(self) -> int | None:
        return self.core.seq

    def commit(self) -> None:
        self.core.commit()

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Value:
        self.core.commit()
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self) -> Iterator[Value]:
        core, http = self.core, self.core.client.http
        attempt = 0
        while True:
            reason = "the server closed the stream"
            started = time.monotonic()
            reconnect_now = False
            try:
                with http.stream("GET", core.url(), params=core.params(), headers=core.headers(),
                                 timeout=core.timeout()) as resp:
                    if resp.status_code != 200:
                        err = ApiError.from_response(resp.status_code, resp.read(), dict(resp.headers))
                        if core.error_is_final(err):
                            raise err
                        raise _Retry(err)
                    core.connected_once = True
                    parser = SSEParser()
                    for chunk in resp.iter_raw():
                        for frame in parser.feed(chunk):
                            value = core.handle(frame)
                            if value is None:
                                continue
                            if not isinstance(value, End):
                                attempt = 0
                            yield value
                            if core.final(value):
                                return
                            if isinstance(value, End):
                                reason = f"the server ended the stream ({value.reason})"
                                reconnect_now = value.reason == "evicted"
                                break
                        else:
                            continue
                        break
            except ClientFailure:
                raise
            except _Retry as exc:
                reason = _reason(exc.error)
            except _NETWORK_ERRORS as exc:
                reason = _reason(exc)
            if time.monotonic() - started > HEALTHY_CONNECTION:
                attempt = 0
            core.give_up(attempt, reason)
            delay = 0.0 if reconnect_now and attempt == 0 else core.delay(attempt)
            attempt += 1
            log.info("%s; reconnecting in %.1f s after %s", reason, delay, core.position or "(live)")
            time.sleep(delay)


class _Retry(Exception):
    def __init__(self, error: ApiError):
        super().__init__(error.message)
        self.error = error
