"""Starting servers for benchmarks and load tests: a free loopback port, and waiting until one listens."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, what: str, output: Callable[[], str] = lambda: "",
                   timeout: float = 30.0) -> None:
    """Return once 127.0.0.1:port accepts a connection. If `proc` exits first, or `timeout` passes, stop `proc`
    (by its pid) and raise RuntimeError naming `what` with the tail of `output()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited before listening: {output()[-2000:]}") from None
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s")
