"""A tiny scripted SSE server on 127.0.0.1 (asyncio in a thread), to test the client's handling of frames a real
server only sends in rare situations (gap, end/evicted, duplicates after a reconnect, torn chunks, errors).

Each connection calls `script(n, request)` (n counts connections from 0; request has .target, .headers) which
returns a list of actions: bytes (sent as they are, each in its own write), a float (sleep that long), the
string "close" (close now), or ("status", code, body) for a non-200 answer. When the list runs out the
connection stays open until the server stops. Invariant: the server only ever listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class FakeSSE:
    def __init__(self, script: Callable[[int, Request], list]):
        self.script = script
        self.requests: list[Request] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeSSE":
        self.thread.start()
        assert self._ready.wait(10), "fake SSE server did not start"
        return self

    def __exit__(self, *exc) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        writers: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            req = Request(method, target, headers)
            n = len(self.requests)
            self.requests.append(req)
            actions = self.script(n, req)
            try:
                if actions and isinstance(actions[0], tuple) and actions[0][0] == "status":
                    _, code, body = actions[0]
                    body = body.encode() if isinstance(body, str) else body
                    writer.write(f"HTTP/1.1 {code} X\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                    await writer.drain()
                    writer.close()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             b"Connection: close\r\n\r\n")
                await writer.drain()
                for action in actions:
                    if action == "close":
                        writer.close()
                        return
                    if isinstance(action, (int, float)):
                        await asyncio.sleep(action)
                        continue
                    writer.write(action)
                    await writer.drain()
                await self._stop.wait()
            except ConnectionError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        for w in writers:
            w.close()
        server.close()


USER = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"


def event_frame(seq: int, kind: str = "PUT", path: str | None = None, user: str = USER, size: int = 2) -> bytes:
    from engine.names import event_id

    path = path or f"/pub/a/{seq}.json"
    if kind == "PUT":
        data = (f'{{"seq":{seq},"user":"{user}","path":"{path}","hash":"h{seq}=","size":{size},'
                f'"ts":1763800000{seq:03d}}}')
    else:
        data = f'{{"seq":{seq},"user":"{user}","path":"{path}","ts":1763800000{seq:03d}}}'
    return f"id: {event_id(seq, user)}\nevent: {kind}\ndata: {data}\n\n".encode()


def gap_frame(lo: int, hi: int) -> bytes:
    return f'event: gap\ndata: {{"from": {lo}, "to": {hi}}}\n\n'.encode()


def end_frame(reason: str, last: str | None) -> bytes:
    import json

    return f"event: end\ndata: {json.dumps({'reason': reason, 'last': last})}\n\n".encode()
