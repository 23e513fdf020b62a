"""Cluster nodes for tests: `homestream serve --cluster ...` subprocesses (so kill -9 is real), on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.bench.procs import free_port, wait_listening


class Node:
    def __init__(self, name: str, data: Path, nats_urls: list[str], cluster_name: str, *, lease_ttl: float = 2.0,
                 ack: str = "cluster", extra: list[str] | None = None):
        self.name = name
        self.data = data
        self.port = free_port()
        self.nats_urls = nats_urls
        self.cluster_name = cluster_name
        self.lease_ttl = lease_ttl
        self.ack = ack
        self.extra = extra or []
        self.logfile = data.parent / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> "Node":
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", str(self.data), "--port", str(self.port),
               "--cluster", ",".join(self.nats_urls), "--node", self.name, "--advertise-url", self.url,
               "--cluster-name", self.cluster_name, "--lease-ttl", str(self.lease_ttl),
               "--replication-ack", self.ack, "--cluster-replicas", "3", "--min-seq-wait", "0.5",
               "--verify-threads", "0", "--read-cache-bytes", "0", *self.extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        return self

    def start(self) -> "Node":
        return self.spawn().listening()

    def listening(self) -> "Node":
        wait_listening(self.proc, self.port, f"node {self.name}", self.log_tail)
        return self

    def log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.http.close()
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def health(self) -> dict:
        return self.http.get("/healthz").json()

    def wait(self, predicate, what: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        last: dict | str = {}
        while time.monotonic() < deadline:
            try:
                last = self.health()
                if predicate(last):
                    return last
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise AssertionError(f"node {self.name}: {what} not within {timeout} s; last /healthz {last}\n"
                             + self.log_tail())

    def wait_role(self, role: str, timeout: float = 20.0) -> dict:
        return self.wait(lambda h: h.get("role") == role, f"role {role}", timeout)

    def wait_applied(self, seq: int, timeout: float = 20.0) -> dict:
        return self.wait(lambda h: h.get("applied_seq", -1) >= seq, f"applied seq {seq}", timeout)


class Writer:
    """Signed PUTs in a thread, one after another, to whichever node is the origin (found from /healthz after a
    failure, or from a replica's 307). Keeps every acknowledged write: (seq, path, body, when, by which node's URL)."""

    def __init__(self, nodes: list[Node], key, prefix: str, rate: float = 0.0):
        import threading

        self.nodes = nodes
        self.key = key
        self.prefix = prefix
        self.rate = rate
        self.acked: list[tuple[int, str, bytes, float, str]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.target = nodes[0].url

    def start(self) -> "Writer":
        self._thread.start()
        return self

    def stop(self) -> "Writer":
        self._stop.set()
        self._thread.join(30)
        return self

    def _find_origin(self) -> None:
        for node in self.nodes:
            try:
                if node.alive() and httpx.get(node.url + "/healthz", timeout=1).json().get("role") == "origin":
                    self.target = node.url
                    return
            except (httpx.HTTPError, ValueError):
                pass
        time.sleep(0.05)

    def _run(self) -> None:
        from engine.names import parse_resume_point

        i = 0
        client = httpx.Client(timeout=5)
        while not self._stop.is_set():
            path = f"{self.prefix}/{i:06d}"
            body = b"w%d" % i
            target = f"/{self.key.user}{path}"
            try:
                r = client.put(self.target + target, content=body,
                               headers={"Authorization": self.key.auth("PUT", target, body)})
            except httpx.HTTPError:
                self.failures += 1
                client.close()
                client = httpx.Client(timeout=5)
                self._find_origin()
                i += 1  # this write's outcome is unknown: never reuse its path
                continue
            if r.status_code in (201, 204):
                self.acked.append((parse_resume_point(r.headers["event-id"]), path, body, time.monotonic(),
                                   self.target))
            elif r.status_code == 307:
                self.target = r.headers["location"][: -len(target)]
                continue
            else:
                self.failures += 1
                self._find_origin()
            i += 1
            if self.rate:
                time.sleep(1 / self.rate)
        client.close()
