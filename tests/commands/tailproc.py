"""`homestream tail` in a subprocess with its stdout lines collected by a thread, for the tail tests."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TailProc:
    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        env = {**{k: v for k, v in os.environ.items() if k != "HOMESTREAM_KEY"}, "PYTHONUNBUFFERED": "1",
               **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "tail", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errs: list[str] = []
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self._errs)

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self._errs.append(line)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_lines(self, n: int, timeout: float = 15) -> list[str]:
        """Block until n lines in all have been printed; fail (with stderr) after `timeout`."""
        deadline = time.monotonic() + timeout
        while len(self.lines) < n:
            left = deadline - time.monotonic()
            try:
                line = self._q.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = "" if left > 0 else None
                if line is None:
                    self.kill()
                    raise AssertionError(f"tail printed {len(self.lines)} of {n} lines: {self.lines}\n"
                                         f"stderr: {self.stderr}")
                continue
            if line is None:
                self.finish(5)
                raise AssertionError(f"tail exited ({self.proc.returncode}) after {self.lines}\n"
                                     f"stderr: {self.stderr}")
            self.lines.append(line)
        return self.lines

    def interrupt(self, timeout: float = 10) -> int:
        """Ctrl-C: SIGINT, then wait for the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish(timeout)

    def finish(self, timeout: float = 10) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(5)
        self._err_reader.join(5)
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
