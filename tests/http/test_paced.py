"""engine/http/paced.py: one slice per loop turn, none while the transport is paused, the body finished once."""

from __future__ import annotations

import asyncio

from engine.http.paced import PacedBody
from engine.http.sse import END_OF_BODY, chunk


class FakeTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class FakeConn:
    def __init__(self):
        self.transport = FakeTransport()
        self.write_paused = False


def test_slices_wait_while_paused_and_the_body_ends_once():
    async def run():
        conn = FakeConn()
        calls = []

        def produce(budget: int):
            calls.append(budget)
            return b"x%d" % len(calls), len(calls) == 3

        body = PacedBody(conn, produce, chunked=True, slice_bytes=10).start(b"head")
        assert conn.transport.writes == [chunk(b"head")] and calls == []  # nothing made in the handler's turn
        await asyncio.sleep(0)
        assert calls == [10]  # one slice per turn
        conn.write_paused = True
        body.on_pause()
        for _ in range(5):
            await asyncio.sleep(0)
        assert calls == [10]  # the step already scheduled finds the transport paused: nothing made
        conn.write_paused = False
        body.on_resume()
        for _ in range(5):
            await asyncio.sleep(0)
        assert calls == [10, 10, 10]
        assert conn.transport.writes == [chunk(b"head"), chunk(b"x1"), chunk(b"x2"), chunk(b"x3"), END_OF_BODY]
        assert conn.transport.closed

    asyncio.run(run())


def test_a_disconnect_stops_production_and_then_hands_over():
    async def run():
        conn = FakeConn()
        calls = []
        body = PacedBody(conn, lambda b: (calls.append(b) or b"d", False), chunked=False).start()
        await asyncio.sleep(0)
        body.on_disconnect()
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(calls) == 1

        conn2 = FakeConn()
        events = []

        class Next:
            def on_pause(self): events.append("pause")
            def on_resume(self): events.append("resume")
            def on_disconnect(self): events.append("gone")

        body2 = PacedBody(conn2, lambda b: (b"h", True), chunked=True, then=lambda c: Next()).start()
        await asyncio.sleep(0)
        body2.on_pause()
        body2.on_resume()
        body2.on_disconnect()
        assert events == ["pause", "resume", "gone"] and not conn2.transport.closed
        assert END_OF_BODY not in conn2.transport.writes  # the next stream owns the body now

    asyncio.run(run())
