"""The supervisor of `serve --workers N` (gunicorn's arbiter, in small): one writer and N workers.

  supervisor ─┬─ writer    (appends, group commit, retention: the only process that writes segments)
              ├─ worker 0  ┐ accept on the shared port, check signatures, forward writes to the writer,
              └─ worker N-1┘ follow the segments read-only, serve reads and streams

It makes a private run directory (mode 0700: the writer's Unix socket, the shared cursor, the metrics
snapshots), binds the listening socket once and lets the workers inherit it (or, with --workers-reuse-port,
lets each worker bind its own SO_REUSEPORT socket), forks the writer, waits until it has recovered the log
and published its cursor, then forks the workers. A child that dies is restarted after a back-off (0.1 s,
doubling to 5 s, back to 0.1 s once a child has lived 10 s), logged, and counted in the cursor's supervisor
slots (homestream_worker_restarts_total, homestream_writer_restarts_total). SIGTERM/SIGINT: SIGTERM to the
workers (they end their streams with `end`/`shutdown` and finish their writes, which need the writer), then
to the writer (it flushes and closes the log); whatever is still running at --shutdown-timeout is killed;
exit 0.

Invariants: the supervisor holds no log, no event loop and no thread (fork stays safe); only it writes the
cursor's supervisor slots; the writer is never restarted while another writer process lives (the log's
directory lock would refuse it anyway).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Callable

from ..config import Settings
from ..errors import StorageError
from ..log.cursor import SharedCursor

log = logging.getLogger("homestream.supervisor")

WORKER_RESTARTS_SLOT = 0
WRITER_RESTARTS_SLOT = 1
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
STABLE_AFTER = 10.0
WRITER_READY_TIMEOUT = 120.0


class Child:
    __slots__ = ("name", "pid", "started", "backoff", "due")

    def __init__(self, name: str):
        self.name = name
        self.pid = 0
        self.started = 0.0
        self.backoff = BACKOFF_FIRST
        self.due = 0.0  # monotonic time of the next start (after a death)


EXPLAINED = 3  # a child's exit code after it logged, in one line, why it could not start


class Supervisor:
    def __init__(self, settings: Settings, workers: int,
                 explain: Callable[[BaseException], str] | None = None):
        self.settings = settings
        self.explain = explain  # one line for a child that cannot start (a held or damaged log): no traceback
        self.workers = workers
        self.run_dir = tempfile.mkdtemp(prefix="homestream-")
        os.chmod(self.run_dir, 0o700)
        self.cursor = SharedCursor.create(os.path.join(self.run_dir, "cursor"))
        self.sock: socket.socket | None = None
        self.writer = Child("writer")
        self.children = [Child(str(i)) for i in range(workers)]
        self.stopping = False
        self.worker_restarts = 0
        self.writer_restarts = 0
        self.writer_explained = False  # the writer exited after logging why it could not start

    # ---- processes ----

    def _fork(self, target: Callable[[], int]) -> int:
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                code = target()
            except (OSError, StorageError) as exc:
                if self.explain is None:
                    log.exception("child %d failed", os.getpid())
                else:
                    # the same line as one process prints (engine/commands/serve.py)
                    logging.getLogger("homestream.server").error("cannot start: %s",
                                                                 " ".join(self.explain(exc).split()))
                    code = EXPLAINED
            except BaseException:
                log.exception("child %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        return pid

    def _start_writer(self) -> None:
        from .writer import serve_writer

        settings, run_dir = self.settings, self.run_dir

        def main() -> int:
            import uvloop

            return uvloop.run(serve_writer(settings, run_dir))

        self.writer.pid = self._fork(main)
        self.writer.started = time.monotonic()
        log.info("writer started (pid %d)", self.writer.pid)

    def _start_worker(self, child: Child) -> None:
        from .worker import serve_worker, worker_settings

        settings, run_dir, sock, workers = worker_settings(self.settings), self.run_dir, self.sock, self.workers
        index = int(child.name)

        def main() -> int:
            import uvloop

            return uvloop.run(serve_worker(settings, index, workers, run_dir, sock))

        child.pid = self._fork(main)
        child.started = time.monotonic()
        log.info("worker %d started (pid %d)", index, child.pid)

    def _wait_writer_ready(self, generation: int) -> bool:
        deadline = time.monotonic() + WRITER_READY_TIMEOUT
        while time.monotonic() < deadline and not self.stopping:
            state = self.cursor.read()
            if state.generation > generation and state.writer_pid == self.writer.pid:
                return True
            pid, status = os.waitpid(self.writer.pid, os.WNOHANG)
            if pid:
                self.writer.pid = 0
                self.writer_explained = os.waitstatus_to_exitcode(status) == EXPLAINED
                return False
            time.sleep(0.01)
        return False

    # ---- the loop ----

    def run(self) -> int:
        s = self.settings
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        _preload()
        try:
            if not s.workers_reuse_port:
                self.sock = socket.create_server((s.host, s.port), backlog=4096, reuse_port=False)
                self.sock.set_inheritable(True)
            self._start_writer()
            if not self._wait_writer_ready(0):
                self._stop_all()
                if self.stopping:  # a signal during start-up: a clean stop
                    return 0
                if not self.writer_explained:  # else its one line "cannot start: ..." said it all
                    log.error("the writer did not start; see its log above")
                return 1
            for child in self.children:
                self._start_worker(child)
            log.info("listening on %s:%d with %d workers (run dir %s)", s.host, s.port, self.workers,
                     self.run_dir)
            while not self.stopping:
                self._reap()
                self._restart_due()
                time.sleep(0.05)
            self._stop_all()
            log.info("stopped cleanly")
            return 0
        finally:
            if self.sock is not None:
                self.sock.close()
            self.cursor.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _on_stop(self, signum, frame) -> None:
        self.stopping = True

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._died(pid, status)

    def _died(self, pid: int, status: int) -> None:
        now = time.monotonic()
        child = self.writer if pid == self.writer.pid else next((c for c in self.children if c.pid == pid), None)
        if child is None:
            return
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        child.pid = 0
        if self.stopping:
            return
        if now - child.started >= STABLE_AFTER:
            child.backoff = BACKOFF_FIRST
        child.due = now + child.backoff
        log.warning("%s died (pid %d, %s); restarting in %.1f s", "writer" if child is self.writer
                    else f"worker {child.name}", pid, how, child.backoff)
        child.backoff = min(BACKOFF_MAX, child.backoff * 2)
        if child is self.writer:
            self.writer_restarts += 1
            self.cursor.set_counter(WRITER_RESTARTS_SLOT, self.writer_restarts)
        else:
            self.worker_restarts += 1
            self.cursor.set_counter(WORKER_RESTARTS_SLOT, self.worker_restarts)

    def _restart_due(self) -> None:
        now = time.monotonic()
        if self.writer.pid == 0 and now >= self.writer.due:
            generation = self.cursor.read().generation
            self._start_writer()
            if not self._wait_writer_ready(generation):
                log.error("the restarted writer did not come up")
                self.writer.due = time.monotonic() + self.writer.backoff
        for child in self.children:
            if child.pid == 0 and now >= child.due and not self.stopping:
                self._start_worker(child)

    def _stop_all(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout
        live = [c for c in self.children if c.pid]
        for c in live:
            _signal(c.pid, signal.SIGTERM)
        self._wait(live, deadline - 1.0 if deadline - time.monotonic() > 2 else deadline)
        if self.writer.pid:
            _signal(self.writer.pid, signal.SIGTERM)
            self._wait([self.writer], deadline)
        for c in [*self.children, self.writer]:
            if c.pid:
                log.warning("%s (pid %d) still running at the shutdown deadline: killed", c.name, c.pid)
                _signal(c.pid, signal.SIGKILL)
                try:
                    os.waitpid(c.pid, 0)
                except ChildProcessError:
                    pass
                c.pid = 0

    def _wait(self, children: list[Child], deadline: float) -> None:
        while any(c.pid for c in children) and time.monotonic() < deadline:
            for c in children:
                if c.pid:
                    try:
                        pid, _ = os.waitpid(c.pid, os.WNOHANG)
                    except ChildProcessError:
                        pid = c.pid
                    if pid:
                        c.pid = 0
            time.sleep(0.02)


def _preload() -> None:
    """Import what the children run before forking them: each then starts in milliseconds, sharing the pages."""
    import importlib

    import uvloop  # noqa: F401

    from . import worker, writer  # noqa: F401
    from .. import server  # noqa: F401

    for name in ("engine.pubsub.install", "engine.pubsub.hub", "engine.api.events", "engine.api.pubky",
                 "engine.sync.install", "engine.sync.server", "engine.sync.collections", "engine.api.seedstore",
                 "engine.http.offload", "engine.native.verify", "engine.keyspace"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def worker_count(text: str) -> int:
    """--workers: a positive whole number, or `auto` for the cores this process may run on."""
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    return int(text)


def run(settings: Settings, explain: Callable[[BaseException], str] | None = None) -> int:
    """Serve: a cluster node, one process, or a supervisor of N workers. `explain` turns a start-up failure
    (OSError, StorageError) of a child into the one line the CLI prints (engine/commands/serve.py)."""
    if settings.cluster:  # a cluster node is one process (--workers with --cluster is refused at start)
        import uvloop

        from ..cluster.run import serve_clustered

        return uvloop.run(serve_clustered(settings))
    n = worker_count(settings.workers)
    if n <= 1:
        from ..server import run as run_server

        return run_server(settings)
    sys.stderr.flush()
    return Supervisor(settings, n, explain).run()
