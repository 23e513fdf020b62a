"""Real servers for end-to-end tests: one in a background thread (fast, inspectable) or in a subprocess
(for signals, crashes and restarts). Both listen on 127.0.0.1 only and stop by themselves."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nacl.signing
import uvloop

from engine.config import Settings
from engine.http.auth import sign_request
from engine.names import encode_user


class Key:
    """A test user: signing key plus its user id."""

    def __init__(self, seed: bytes):
        self.signing_key = nacl.signing.SigningKey(seed)
        self.user = encode_user(bytes(self.signing_key.verify_key))
        self._last_ts: dict[tuple, int] = {}

    def auth(self, method: str, path: str, body: bytes = b"", ts: int | None = None) -> str:
        if ts is None:
            ts = int(time.time())
            if method not in ("GET", "HEAD"):
                # the same write signed twice in one second would be a replay: move its timestamp on
                key = (method, path, bytes(body))
                ts = max(ts, self._last_ts.get(key, 0) + 1)
                self._last_ts[key] = ts
        return sign_request(self.signing_key, method, path, body, ts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """The real server (same code as `homestream serve`) on a uvloop in a daemon thread."""

    def __init__(self, data: Path, build=None, **overrides):
        self.settings = Settings.load(env={}, overrides={"data": str(data), "port": free_port(), **overrides})
        self.build = build  # what assembles the app: engine.server.build_app, or e.g. the relay's build_relay
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        self.app = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def port(self) -> int:
        return self.settings.port

    def _run(self) -> None:
        from engine.server import Server, build_app

        async def main() -> None:
            self._stop = asyncio.Event()
            self.loop = asyncio.get_running_loop()
            self.app = (self.build or build_app)(self.settings)
            self.server = Server(self.settings, self.app, self.loop)
            await self.server.start()
            self._ready.set()
            await self._stop.wait()
            await self.server.shutdown()
            self.app.log.close()

        try:
            uvloop.run(main())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._ready.set()

    def start(self) -> "ThreadServer":
        self.thread.start()
        if not self._ready.wait(20) or self._error:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    def call(self, fn, *args):
        """Run fn on the server's loop and return its result (for inspecting state)."""
        fut = asyncio.run_coroutine_threadsafe(self._call(fn, *args), self.loop)
        return fut.result(10)

    @staticmethod
    async def _call(fn, *args):
        return fn(*args)

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(20)
        if self._error:
            raise self._error


class ProcessServer:
    """`homestream serve` (or `command`, e.g. "relay") in a subprocess, stopped with SIGTERM (or killed) by its pid."""

    def __init__(self, data: Path, port: int | None = None, extra: list[str] | None = None, command: str = "serve"):
        self.data = data
        self.port = port or free_port()
        self.extra = extra or []
        self.command = command
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> "ProcessServer":
        cmd = [sys.executable, "-m", "engine.cli", self.command, "--data", str(self.data), "--port", str(self.port),
               *self.extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("server did not start listening")

    def terminate(self, timeout: float = 15) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(errors="replace")

    def kill(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        out = self.proc.communicate(timeout=10)[0] if self.proc is not None else b""
        return out.decode(errors="replace")


class WorkersServer:
    """`homestream serve --workers N` in a subprocess (supervisor, writer, N workers), with the ThreadServer's
    face for black-box tests. A test that inspects a single process's state (`.app`, `.call`, `.server`) is
    skipped here: there is no such process."""

    def __init__(self, data: Path, workers: int = 2, **overrides):
        self.settings = Settings.load(env={}, overrides={"data": str(data), "port": free_port(), **overrides})
        self.workers = workers
        self.pid = 0
        self._status: int | None = None
        self.log_path = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def port(self) -> int:
        return self.settings.port

    def start(self, timeout: float = 30) -> "WorkersServer":
        """Fork the supervisor from this (already imported) process: a start costs milliseconds, not the
        seconds of a fresh interpreter. Its log goes to `<data>.log`."""
        from engine.workers.supervisor import Supervisor, worker_count

        self.log_path = str(self.settings.data) + ".log"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setpgid(0, 0)
                fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                import logging

                root = logging.getLogger()
                for handler in list(root.handlers):
                    root.removeHandler(handler)
                logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                                    format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
                code = Supervisor(self.settings, worker_count(str(self.workers))).run()
            finally:
                os._exit(code)
        self.pid = pid
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import json
        import urllib.request

        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline:
            if self.returncode() is not None:
                raise RuntimeError(f"server exited: {self.read_log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    health = json.loads(resp.read())
                if health.get("writer") == "up":
                    seen.add(health["worker"])
                    if len(seen) == self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"server did not start: {self.read_log()}")

    def read_log(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def returncode(self) -> int | None:
        if self._status is not None:
            return self._status
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._status = os.waitstatus_to_exitcode(status)
        return self._status

    def __getattr__(self, name: str):
        if name in ("app", "call", "server", "loop"):
            import pytest

            pytest.skip(f"inspects one process's state (.{name}); with --workers {self.workers} there is none")
        raise AttributeError(name)

    def children(self) -> list[int]:
        """Pids of the supervisor's children (the writer and the workers)."""
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the supervisor; its exit code (killed with its process group after `timeout`)."""
        if self.returncode() is not None:
            return self._status
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.returncode() is not None:
                return self._status
            time.sleep(0.01)
        self.kill()
        return -9

    def kill(self) -> None:
        if self.returncode() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self._status = -9


def make_test_server(data: Path, workers: int, **overrides):
    """The e2e fixtures' server: in a thread for --workers 1, as a subprocess for more."""
    if workers <= 1:
        return ThreadServer(data, **overrides).start()
    return WorkersServer(data, workers, **overrides).start()
