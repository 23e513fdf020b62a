"""The process: uvloop, the listener, the connection registry, commit fan-in, signals, graceful shutdown.

Startup opens the log (recovery runs there), rebuilds the key index, wires the commit listener that releases
waiting responses and publishes events, starts the signature-check threads (engine/http/offload.py), and
listens. SIGTERM/SIGINT: stop accepting, end streams with `end`/`shutdown`, let in-flight requests finish and
their commits land, flush the log, exit 0 — all within `shutdown_timeout`. Invariant: a response waiting for durability is released only by `_on_commit`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from .app import App
from .config import Settings
from .errors import StorageError
from .http.connection import HttpConnection

log = logging.getLogger("homestream.server")

SMALL_BODY_BYTES = 64 * 1024  # request bodies up to this size have a reserve past body_budget_bytes (reserve_body)


class Server:
    def __init__(self, settings: Settings, app: App, loop: asyncio.AbstractEventLoop, sock: Any = None):
        self.settings = settings
        self.runs_retention = True  # False in a worker: the writer process owns retention (and Maintenance)
        self.reuse_port = False  # a worker of serve --workers N with --workers-reuse-port: its own SO_REUSEPORT socket
        self.sock = sock  # a listening socket to accept on (a worker of serve --workers N), else bind host:port
        self.app = app
        self.loop = loop
        self.connections: set[HttpConnection] = set()
        self.waiting: set[HttpConnection] = set()
        self.listener: asyncio.AbstractServer | None = None
        self.body_bytes = 0  # request-body bytes reserved by connections (reserve_body), at most body_budget_bytes
        self.body_limit = settings.body_budget_bytes  # ... plus an eighth for small bodies (see reserve_body)
        self.small_body_limit = settings.body_budget_bytes + settings.body_budget_bytes // 8
        self.timer_step = min(settings.header_timeout, settings.idle_timeout)  # see HttpConnection._schedule
        self.stopping = False
        self._stopped = asyncio.Event()
        from .maintenance import Maintenance

        self.maintenance = Maintenance(app, settings, loop)  # retention, checkpoints, backups (off the loop)
        # commits reach the server from the log, or through a cluster origin's gate (engine/cluster/gate.py),
        # which holds them until JetStream has them
        (app.gate if app.gate is not None else app.log).add_commit_listener(self._on_commit)
        app.log.bind_loop(loop)
        m = app.metrics
        m.gauge("homestream_connections", "open TCP connections", lambda: len(self.connections))
        m.gauge("homestream_body_bytes_in_flight", "request-body bytes reserved against body_budget_bytes",
                lambda: self.body_bytes)
        if settings.verify_threads > 0:
            app.offload = _start_offload(app, loop, settings.verify_threads)
        if app.offload is not None:
            off = app.offload
            m.gauge("homestream_signatures_offloaded_total", "signatures checked on the verifier threads",
                    lambda: off.offloaded_total)
            m.gauge("homestream_signatures_inline_total",
                    "signed requests checked on the loop because the verifier queue was full",
                    lambda: off.inline_total)
            m.gauge("homestream_signatures_waiting", "requests waiting for their signature check", lambda: len(off))

    # ---- connection registry ----

    def admit(self, conn: HttpConnection) -> bool:
        if self.stopping or len(self.connections) >= self.settings.max_connections:
            return False
        self.connections.add(conn)
        self.app.metrics.connections_total += 1
        return True

    def forget(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        self.waiting.discard(conn)
        if self.stopping and not self.connections:
            self._stopped.set()

    def reserve_body(self, size: int, whole: int) -> bool:
        """Take `size` more bytes of the request-body budget for a body that then holds `whole`; False (nothing
        taken) when that would pass the budget. A small body (whole <= SMALL_BODY_BYTES) may go an eighth past
        it, so that a few large uploads, finished or not, never starve ordinary small writes."""
        if self.body_bytes + size > (self.small_body_limit if whole <= SMALL_BODY_BYTES else self.body_limit):
            return False
        self.body_bytes += size
        return True

    def release_body(self, size: int) -> None:
        self.body_bytes -= size

    def wait_for_commit(self, conn: HttpConnection) -> None:
        self.waiting.add(conn)

    def _on_commit(self, records: list[Any]) -> None:
        durable = self.app.durable_seq()
        if self.waiting:
            done = [conn for conn in self.waiting if conn.on_commit(durable)]
            self.waiting.difference_update(done)
        if self.app.hub is not None and records:
            self.app.hub.publish(records)
        if self.app.seq_waiters:
            self.app.seq_waiters.release(durable)

    # ---- lifecycle ----

    async def start(self) -> None:
        s = self.settings
        if self.sock is not None:
            self.listener = await self.loop.create_server(lambda: HttpConnection(self), sock=self.sock,
                                                          backlog=4096)
        else:
            self.listener = await self.loop.create_server(lambda: HttpConnection(self), s.host, s.port,
                                                          backlog=4096, reuse_address=True,
                                                          reuse_port=self.reuse_port or None)
        if self.runs_retention:
            self.maintenance.start()
        for service in self.app.services:
            service.start(self.loop)
        addr = ", ".join(str(sock.getsockname()) for sock in self.listener.sockets)
        log.info("listening on %s (data %s, fsync %s)", addr, s.data, s.fsync)

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("shutting down: %d connections", len(self.connections))
        deadline = time.monotonic() + self.settings.shutdown_timeout
        if self.listener is not None:
            self.listener.close()
        for service in self.app.services:
            await service.stop()
        await self.maintenance.stop(deadline - 1)
        if self.app.hub is not None:
            self.app.hub.shutdown()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            try:
                await asyncio.wait_for(self._stopped.wait(), max(0.1, deadline - time.monotonic() - 1))
            except asyncio.TimeoutError:
                log.warning("%d connections still open at the shutdown deadline; closing them",
                            len(self.connections))
        await asyncio.to_thread(self.app.log.flush)
        if (self.settings.checkpoint_interval > 0 and self.runs_retention and self.app.keyspace is not None
                and deadline - time.monotonic() > 1
                and self.app.log.last_seq != self.maintenance.checkpoint_seq):
            try:  # the next start reads only what comes after it
                await asyncio.wait_for(self.app.keyspace.checkpoint_writer().run(), deadline - time.monotonic() - 1)
            except Exception as exc:
                log.warning("no checkpoint at shutdown (%s); the next start rebuilds the index from the log", exc)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self.app.offload is not None:
            self.app.offload.close()
            self.app.offload = None


def _start_offload(app: App, loop: asyncio.AbstractEventLoop, threads: int) -> Any:
    """The verifier threads, or None (signatures then checked on the loop) if they cannot start here."""
    try:
        from .http.offload import SignatureOffload
        from .native.verify import SignatureVerifier

        verifier = SignatureVerifier(threads)
    except (ImportError, AttributeError, OSError, MemoryError) as exc:
        log.warning("signature checks stay on the event loop: cannot start verifier threads: %s", exc)
        return None
    return SignatureOffload(verifier, app.auth, app._dispatch, loop)


def build_app(settings: Settings) -> App:
    """Open the log and keyspace (recovery runs here) and assemble the application."""
    from .keyspace import Keyspace

    settings.data_path.mkdir(parents=True, exist_ok=True)
    keyspace = Keyspace.open(settings.data, segment_bytes=settings.segment_bytes, fsync=settings.fsync,
                             commit_window=settings.commit_window_ms / 1000.0,
                             max_value_bytes=settings.max_body_bytes)
    log_ = keyspace.log
    app = App(settings, log_, keyspace)
    log_gauges(app.metrics, log_, keyspace)
    _install_extensions(app)
    return app


def log_gauges(m: Any, log_: Any, keyspace: Any = None) -> None:
    """The log's gauges and counters on /metrics, and the key index's when there is one (a homeserver's, a
    worker's over its reader, a relay's without keys)."""
    m.gauge("homestream_log_size_bytes", "bytes of log segments on disk", lambda: log_.size_bytes)
    m.gauge("homestream_log_last_seq", "newest seq in the log", lambda: log_.last_seq)
    m.gauge("homestream_log_first_seq", "oldest seq of retained stream history", lambda: log_.first_seq)
    stat_help = {
        "truncated_bytes_total": "bytes dropped from torn log tails at start-up",
        "truncated_records_total": "records dropped from torn log tails at start-up",
        "commits_total": "group commits (one fdatasync each, unless fsync=never)",
        "fsync_seconds_total": "time spent committing (fdatasync); latency = this / commits_total",
        "fsync_last_seconds": "duration of the last commit",
        "segments_compacted_total": "segments rewritten by retention (live records copied forward)",
        "segments_removed_total": "segments deleted by retention",
        "records_compacted_away_total": "records dropped by retention",
    }
    for name in log_.stats.__slots__:
        m.gauge(f"homestream_log_{name}", stat_help.get(name, name.replace("_", " ")),
                lambda name=name: getattr(log_.stats, name))
    if keyspace is not None:
        m.gauge("homestream_keys", "live keys in the index", lambda: keyspace.count)


def _install_extensions(app: App) -> None:
    """Event streams, pubky endpoints and sync register their handlers here, when built."""
    import importlib

    for module_name in ("engine.pubsub.install", "engine.sync.install"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.install(app)


async def serve(settings: Settings, ready: Any = None, build: Any = None) -> int:
    """Run a server until SIGTERM/SIGINT: the homeserver, or what `build(settings)` assembles (the relay)."""
    loop = asyncio.get_running_loop()
    app = (build or build_app)(settings)
    if settings.open_writes:
        banner = "!" * 78
        for line in (banner, "!! --open-writes: ANY client can write ANY user's data. Local benchmarks only. !!",
                     banner):
            log.warning(line)
    from .policy.gate import startup_warnings

    for line in startup_warnings(settings):
        log.warning(line)
    server = Server(settings, app, loop)
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if settings.backup_dir:
        try:  # one backup now into --backup-dir (engine/maintenance.py)
            loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(server.maintenance.backup_now()))
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready(server)
    await stop.wait()
    await server.shutdown()
    try:
        app.log.close()
    except StorageError as exc:  # the last commit failed: records may not be durable (a full disk alone is not that)
        log.error("stopped, but the log could not be closed cleanly: %s", exc)
        return 1
    log.info("stopped cleanly")
    return 0


def run(settings: Settings, build: Any = None) -> int:
    import uvloop

    return uvloop.run(serve(settings, build=build))
