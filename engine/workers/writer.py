"""The writer process of `serve --workers N`: the only process that appends to the log.

It opens the log (recovery truncates a torn tail, as a single server does), serves the workers' write ops on
a Unix socket (engine/workers/channel.py), decides each with api/writes.apply_write against its own key index
(201/204, 404, item dedup, and the replay memory every worker's writes share), and after every group commit
publishes the durable seq in the shared cursor (engine/log/cursor.py) and tells the workers. It also runs
retention, and bumps the cursor's epoch when retention rewrote or removed segments.

Invariants:
- an op is answered after its record is appended (durable only once the cursor covers its seq: the worker
  waits for that), or with an error and nothing written;
- the cursor is published only from the commit listener, so it never names a seq that is not durable;
- a start bumps the cursor's generation after recovery and a flush, so followers re-map what recovery changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from ..api.writes import apply_write
from ..config import Settings
from ..errors import ClientError, LogFull, StorageError
from ..http.auth import ReplayMemory
from ..log.cursor import SharedCursor
from ..metrics import Metrics
from . import channel
from .snapshot import MetricsSnapshots

log = logging.getLogger("homestream.writer")

MAX_FRAME_EXTRA = 64 * 1024


class WriterService:
    def __init__(self, settings: Settings, keyspace: Any, cursor: SharedCursor, loop: asyncio.AbstractEventLoop):
        self.settings = settings
        self.keyspace = keyspace
        self.log = keyspace.log
        self.cursor = cursor
        self.loop = loop
        self.replay = ReplayMemory(settings.auth_skew)
        self.links: set[WorkerLink] = set()
        self.ops_total = 0
        self.errors_total = 0
        self.log.add_commit_listener(self._on_commit)
        self.log.bind_loop(loop)

    def _on_commit(self, records: list[Any]) -> None:
        durable = self.log.durable_seq
        self.cursor.publish(durable, self.log.first_seq)
        frame = channel.encode_commit(durable)
        for link in self.links:
            link.send(frame)

    def execute(self, request_id: int, fields: list[bytes]) -> bytes:
        self.ops_total += 1
        try:
            op = channel.decode_write(fields)
            result = apply_write(self.keyspace, op, self.replay, time.time())
            return channel.encode_result(request_id, result)
        except ClientError as exc:
            self.errors_total += 1
            return channel.encode_error(request_id, exc.status, exc.code, exc.message)
        except LogFull as exc:
            self.errors_total += 1
            log.error("write refused: %s", exc)
            return channel.encode_error(request_id, 507, "insufficient_storage", str(exc))
        except StorageError as exc:
            self.errors_total += 1
            log.error("storage error: %s", exc)
            return channel.encode_error(request_id, 500, "storage_error", "the server could not write its log")
        except Exception:
            self.errors_total += 1
            log.exception("unhandled error applying a write")
            return channel.encode_error(request_id, 500, "internal_error", "internal server error")

    def run_retention(self) -> None:
        s = self.settings
        try:
            result = self.keyspace.apply_retention(s.retention_age, s.retention_bytes)
        except Exception:
            log.exception("retention failed; will retry")
            return
        if result.get("compacted") or result.get("removed"):
            log.info("retention: %s", result)
            state = self.cursor.read()
            self.cursor.publish(self.log.durable_seq, self.log.first_seq, epoch=state.epoch + 1)


class WorkerLink(asyncio.Protocol):
    """One worker's connection to the writer."""

    def __init__(self, service: WriterService):
        self.service = service
        self.decoder = channel.Decoder(service.settings.max_body_bytes + MAX_FRAME_EXTRA)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.service.links.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.links.discard(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ValueError as exc:
            log.error("closing a worker channel: %s", exc)
            self.transport.close()
            return
        out = []
        for request_id, op, fields in frames:
            if op == channel.OP_WRITE:
                out.append(self.service.execute(request_id, fields))
        if out:
            self.transport.writelines(out)

    # back-pressure: a worker that does not read its answers is not read from either
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def serve_writer(settings: Settings, run_dir: str) -> int:
    from ..keyspace import Keyspace
    from ..server import log_gauges

    loop = asyncio.get_running_loop()
    keyspace = Keyspace.open(settings.data, segment_bytes=settings.segment_bytes, fsync=settings.fsync,
                             commit_window=settings.commit_window_ms / 1000.0,
                             max_value_bytes=settings.max_body_bytes)
    keyspace.log.flush()  # what recovery kept is durable before any worker is told so
    if settings.user_quota_bytes > 0:  # SPEC 5.2: the quota is decided against the index that appends
        from ..policy.quota import Quota

        keyspace.put_guard = Quota(settings.user_quota_bytes)
    cursor = SharedCursor.attach(os.path.join(run_dir, "cursor"))
    state = cursor.read()
    service = WriterService(settings, keyspace, cursor, loop)
    cursor.publish(keyspace.log.durable_seq, keyspace.log.first_seq, epoch=state.epoch + 1,
                   generation=state.generation + 1, writer_pid=os.getpid())
    metrics = Metrics()
    log_gauges(metrics, keyspace.log, keyspace)
    metrics.gauge("homestream_writer_ops_total", "write ops the writer process applied or refused",
                  lambda: service.ops_total)
    metrics.gauge("homestream_worker_restarts_total", "worker processes restarted by the supervisor",
                  lambda: cursor.counter(0))
    metrics.gauge("homestream_writer_restarts_total", "writer processes restarted by the supervisor",
                  lambda: cursor.counter(1))
    snapshots = MetricsSnapshots(run_dir, "writer", metrics, loop)
    sock_path = os.path.join(run_dir, "writer.sock")
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    server = await loop.create_unix_server(lambda: WorkerLink(service), sock_path, backlog=1024)
    retention = None

    def retention_tick() -> None:
        nonlocal retention
        service.run_retention()
        retention = loop.call_later(settings.retention_interval, retention_tick)

    if settings.retention_age or settings.retention_bytes:
        retention = loop.call_later(settings.retention_interval, retention_tick)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("writer %d: log %s at seq %d (fsync %s)", os.getpid(), settings.data, keyspace.log.durable_seq,
             settings.fsync)
    await stop.wait()
    server.close()
    if retention is not None:
        retention.cancel()
    snapshots.close()
    await asyncio.to_thread(keyspace.log.flush)
    for link in list(service.links):
        link.transport.close()
    keyspace.close()
    cursor.publish(cursor.read().durable_seq, cursor.read().first_seq, writer_pid=0)
    cursor.close()
    log.info("writer stopped cleanly")
    return 0
