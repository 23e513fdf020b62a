"""Hostile-client memory test (issue 21): a default server under the request mixes that used to cost it gigabytes,
while its RSS and the latency of `GET /healthz` are sampled.

Bounded: `--duration` seconds of load (default 30) after a few seconds of setup; everything talks to 127.0.0.1;
the server is started here (`python -m engine.cli serve`, default settings, a random port, a temporary data
directory) and stopped by its pid at the end (SIGTERM, then SIGKILL). As a guard for a shared machine the run is
cut short, and fails, if the server's RSS passes `--abort-rss-mib` (default 2048).

The mixes, all at once for the whole duration:
- item 1, output back-pressure: `--pipeliners` sockets (default 8) with a small receive buffer each send 400
  pipelined `GET`s of an 8 MiB value and never read; each is replaced by a new one every 10 s;
- item 2, request bodies: `--unfinished` connections (default 20) declare an 8 MiB body, send 4 MiB of it and
  stall; `--tricklers` (default 40) declare 60 KiB and send a byte every 2 s; one chunked body sends 1 MiB of
  chunks and stalls; each is replaced half a second after the server answers or closes it;
- item 4, requests whose cost is set by the client: anonymous `POST /get` naming one public storage of 300 items
  800 times, `POST /get` naming 801 distinct storages, `GET /bloom?count=200000000` and `count=1e400`, one
  client each, back to back, reading every answer (bodies under 64 KiB, so that the body budget, full of mix 2's
  bodies, lets them in).
Meanwhile a process of its own reads VmRSS from /proc/<pid>/status and times `GET /healthz` on its own keep-alive connection,
every 100 ms.

Prints the figures (and writes them with --json FILE); exit status 0 when max RSS < --rss-limit-mib (300) and
every healthz answered 200 in < --healthz-limit-ms (100); 1 when a bound was passed; 2 when the run itself failed
(server did not start or died, setup failed).

  python -m loadtest.hostile                  # 30 s
  python -m loadtest.hostile --duration 3 --mixes 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import nacl.signing

from engine.bench.fanout import rss_bytes
from engine.bench.procs import free_port, wait_listening
from engine.http.auth import sign_request
from engine.names import encode_user

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
BIG_PATH = "/pub/hostile/big.bin"
STORAGE_DIR = "/pub/hostile/items/"
STORAGE_ITEMS = 300


class Signer:
    def __init__(self, seed: bytes):
        self.key = nacl.signing.SigningKey(seed)
        self.user = encode_user(bytes(self.key.verify_key))

    def auth(self, method: str, path: str, body: bytes) -> str:
        return sign_request(self.key, method, path, body, int(time.time()))


# ---- a minimal HTTP/1.1 client over asyncio streams (the load tests' own; no client library in the way) ----

async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one Content-Length response; (0, b"") when the server closed first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0, b""
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    try:
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return status, b""
    return status, body


async def request(port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
                  timeout: float = 60.0) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
                 "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.transport.abort()


async def setup(port: int, signer: Signer) -> str:
    """An 8 MiB public value and a public storage of STORAGE_ITEMS items; returns the storage id."""
    big = bytes(range(256)) * (8 * MiB // 256)  # exactly --max-body-bytes at the default
    target = f"/{signer.user}{BIG_PATH}"
    status, _ = await request(port, "PUT", target, big, {"Authorization": signer.auth("PUT", target, big)})
    if status != 201:
        raise RuntimeError(f"PUT of the 8 MiB value answered {status}")
    storage = f"{signer.user}{STORAGE_DIR}"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        path = f"/set/{storage}"
        for i in range(STORAGE_ITEMS):  # pipelined: the writes share group commits
            body = json.dumps({"value": {"n": i, "pad": "x" * 64}}).encode()
            writer.write((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                          f"Authorization: {signer.auth('POST', path, body)}\r\n\r\n").encode() + body)
        for _ in range(STORAGE_ITEMS):
            status, answer = await read_response(reader)
            if status not in (200, 201):
                raise RuntimeError(f"POST /set answered {status}: {answer[:200]!r}")
    finally:
        writer.transport.abort()
    return storage


# ---- the mixes ----

class Tally:
    """Requests sent and answers got, by mix and status (0: closed without an answer)."""

    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.answers: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)

    def answer(self, mix: str, status: int) -> None:
        self.answers[mix][status] += 1

    def as_dict(self) -> dict[str, Any]:
        return {mix: {"sent": self.sent[mix], "answers": {str(k): v for k, v in sorted(self.answers[mix].items())}}
                for mix in sorted(set(self.sent) | set(self.answers))}


async def pipeliner(port: int, target: str, end: float, tally: Tally) -> None:
    """Item 1: 400 pipelined GETs of the 8 MiB value on a socket that never reads; renewed every 10 s."""
    loop = asyncio.get_running_loop()
    burst = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 400
    while time.monotonic() < end:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, burst)
            tally.sent["1 pipelined GET 8 MiB"] += 400
            await asyncio.sleep(min(10.0, max(0.0, end - time.monotonic())))
        except OSError:
            tally.answer("1 pipelined GET 8 MiB", 0)
            await asyncio.sleep(0.5)
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # a reset: the server drops what it queued


async def body_sender(port: int, target: str, end: float, tally: Tally, mix: str, length: int, first: int,
                      trickle: float, chunked: bool = False) -> None:
    """Item 2: declare a body of `length`, send `first` bytes of it, then a byte every `trickle` s (0: none) until
    the server answers or closes; then start over (half a second later)."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    head = f"PUT {target} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode()
    if chunked:
        data = b"".join(b"10000\r\n" + b"c" * 0x10000 + b"\r\n" for _ in range(first // 0x10000))
    else:
        data = b"b" * first
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        tally.sent[mix] += 1
        answer = asyncio.ensure_future(read_response(reader))
        try:
            writer.write(head + data)
            while not answer.done() and time.monotonic() < end:
                await asyncio.wait([answer], timeout=trickle or 1.0)
                if trickle and not answer.done():
                    writer.write(b"1\r\nt\r\n" if chunked else b"t")
            if answer.done():
                tally.answer(mix, answer.result()[0])
        except (OSError, ConnectionError):
            tally.answer(mix, 0)
        finally:
            answer.cancel()
            writer.transport.abort()
        await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))


async def costly(port: int, end: float, tally: Tally, mix: str, method: str, target: str, body: bytes) -> None:
    """Item 4: the same costly anonymous request back to back, each answer read whole."""
    while time.monotonic() < end:
        tally.sent[mix] += 1
        try:
            status, _ = await request(port, method, target, body, timeout=max(1.0, end - time.monotonic() + 5))
        except (OSError, asyncio.TimeoutError):
            status = 0
        tally.answer(mix, status)
        if status == 0:
            await asyncio.sleep(0.2)


async def hostile(port: int, signer: Signer, storage: str, duration: float, mixes: set[str], pipeliners: int,
                  unfinished: int, tricklers: int, tally: Tally) -> None:
    end = time.monotonic() + duration
    big = f"/{signer.user}{BIG_PATH}"
    put = f"/{signer.user}/pub/hostile/upload"
    tasks = []
    if "1" in mixes:
        tasks += [pipeliner(port, big, end, tally) for _ in range(pipeliners)]
    if "2" in mixes:
        tasks += [body_sender(port, put, end, tally, "2 unfinished 8 MiB body", 8 * MiB, 4 * MiB, 0)
                  for _ in range(unfinished)]
        tasks += [body_sender(port, put, end, tally, "2 trickled body", 60 * 1024, 1, 2.0)
                  for _ in range(tricklers)]
        tasks.append(body_sender(port, put, end, tally, "2 unfinished chunked body", 0, MiB, 0, chunked=True))
    if "4" in mixes:
        # bodies under 64 KiB, so that mix 2 holding the body budget does not turn these away with 503
        repeated = json.dumps({"items": [storage] * 800}).encode()
        many = json.dumps({"items": [storage] + [f"{encode_user(i.to_bytes(32, 'big'))}/pub/s{i}/"
                                                 for i in range(800)]}).encode()
        assert len(repeated) < 64 * 1024 and len(many) < 64 * 1024
        tasks += [
            costly(port, end, tally, "4 POST /get repeated storage x800", "POST", "/get", repeated),
            costly(port, end, tally, "4 POST /get 801 storages", "POST", "/get", many),
            costly(port, end, tally, "4 GET /bloom count=200000000", "GET",
                   f"/bloom?id={_quote(storage)}&count=200000000", b""),
            costly(port, end, tally, "4 GET /bloom count=1e400", "GET", f"/bloom?id={_quote(storage)}&count=1e400",
                   b""),
        ]
    await asyncio.gather(*(_after(i * min(1.0, duration / 3) / max(1, len(tasks)), t) for i, t in enumerate(tasks)))


async def _after(delay: float, task: Any) -> None:
    """Start a client `delay` s late: the clients' starts are spread over the first second, so what is measured
    is the server under the load, not this process opening 70 connections in one instant on a 2-core machine."""
    await asyncio.sleep(delay)
    await task


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# ---- sampling ----

class Probe:
    """Every `interval` s: the server's VmRSS, and the time of one `GET /healthz` on a keep-alive connection (the
    next one 100 ms after the last answer, or after a timeout of `timeout` s, then on a new connection).

    It runs in a process of its own, so that the hostile clients' work in this one cannot delay its timing."""

    def __init__(self, pid: int, port: int, interval: float = 0.1, timeout: float = 5.0, abort_rss: int = 0):
        self.pid, self.port, self.interval, self.timeout = pid, port, interval, timeout
        self.rss: list[tuple[float, int]] = []
        self.healthz: list[tuple[float, float, int]] = []  # (t, seconds, status; 0 = no answer)
        self.abort_rss = abort_rss
        self.aborted = False
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.ready = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_probe_main, args=(self, send), daemon=True)

    def start(self) -> None:
        self._proc.start()

    def join(self, timeout: float) -> None:
        if self._recv.poll(timeout):
            self.rss, self.healthz, self.aborted = self._recv.recv()
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()  # the probe process this run started, by its handle

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_proc", "_recv")}

    def run(self) -> None:
        """RSS on a thread of its own, so that a /healthz that hangs does not hide the memory meanwhile."""
        self.ready.set()
        start = time.monotonic()
        sampler = threading.Thread(target=self._sample_rss, args=(start,), daemon=True)
        sampler.start()
        sock = None
        while not self.stop.is_set() and not self.aborted:
            tick = time.monotonic()
            status = 0
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status = _read_status(sock)
            except OSError:
                pass
            took = time.monotonic() - tick
            if status == 0 and sock is not None:
                sock.close()
                sock = None
            self.healthz.append((tick - start, took, status))
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - tick)))
        if sock is not None:
            sock.close()
        sampler.join(5)

    def _sample_rss(self, start: float) -> None:
        while not self.stop.is_set():
            tick = time.monotonic()
            try:
                rss = rss_bytes(self.pid)
            except OSError:
                return  # the server is gone
            self.rss.append((tick - start, rss))
            if self.abort_rss and rss >= self.abort_rss:
                self.aborted = True
                os.kill(self.pid, signal.SIGKILL)  # the server this run started, by its pid
                return
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - tick)))


def _probe_main(probe: Probe, send: Any) -> None:
    probe.run()
    send.send((probe.rss, probe.healthz, probe.aborted))


def _percentiles(values: list[float], points: tuple[int, ...]) -> list[float]:
    ordered = sorted(values)
    if not ordered:
        return []
    return [round(ordered[min(len(ordered) - 1, len(ordered) * p // 100)] * 1000, 1) for p in points]


def _read_status(sock: socket.socket) -> int:
    buf = b""
    while b"\r\n\r\n" not in buf:
        part = sock.recv(65536)
        if not part:
            return 0
        buf += part
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        part = sock.recv(65536)
        if not part:
            return 0
        rest += part
    return int(head.split(b" ", 2)[1])


# ---- the run ----

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of hostile load (default 30)")
    ap.add_argument("--mixes", default="1,2,4", help="which of the issue's mixes to run: 1, 2, 4 (default all)")
    ap.add_argument("--pipeliners", type=int, default=8)
    ap.add_argument("--unfinished", type=int, default=20)
    ap.add_argument("--tricklers", type=int, default=40)
    ap.add_argument("--rss-limit-mib", type=float, default=300.0)
    ap.add_argument("--healthz-limit-ms", type=float, default=100.0)
    ap.add_argument("--abort-rss-mib", type=float, default=2048.0, help="kill the server past this RSS (a guard)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    mixes = {m.strip() for m in args.mixes.split(",") if m.strip()}
    if not mixes <= {"1", "2", "4"}:
        ap.error("--mixes takes 1, 2 and 4")

    port = free_port()
    tmp = tempfile.TemporaryDirectory(prefix="homestream-hostile-")
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--data", str(Path(tmp.name) / "data"), "--port", str(port),
           "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log_path = Path(tmp.name) / "server.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    tally = Tally()
    probe: Probe | None = None
    error = None
    baseline = 0
    phases: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        wait_listening(proc, port, "homestream", lambda: log_path.read_text(errors="replace"))
        signer = Signer(b"\x21" * 32)
        storage = asyncio.run(setup(port, signer))
        baseline = rss_bytes(proc.pid)
        probe = Probe(proc.pid, port, abort_rss=int(args.abort_rss_mib * MiB))
        probe.start()
        if not probe.ready.wait(60):  # the probe's interpreter starts before the load does
            raise RuntimeError("the probe process did not start")
        phases["setup_s"] = round(time.monotonic() - t0, 1)
        asyncio.run(hostile(port, signer, storage, args.duration, mixes, args.pipeliners, args.unfinished,
                            args.tricklers, tally))
        time.sleep(0.5)  # a few samples once the load has stopped
        phases["load_s"] = round(time.monotonic() - t0 - phases["setup_s"], 1)
    except Exception as exc:  # reported, and the server is still stopped below
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if probe is not None:
            probe.stop.set()
            probe.join(10)
        died = proc.poll() is not None
        if not died:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(12)  # its own shutdown takes at most --shutdown-timeout (10 s), unless it is stuck
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_file.close()
        phases["total_s"] = round(time.monotonic() - t0, 1)
        server_log = log_path.read_text(errors="replace")
        tmp.cleanup()

    rss = probe.rss if probe else []
    hz = probe.healthz if probe else []
    max_rss = max((r for _, r in rss), default=0)
    max_hz = max((s for _, s, _ in hz), default=0.0)
    failed_hz = sum(1 for _, _, status in hz if status != 200)
    slow = [(round(t, 2), round(s * 1000, 1)) for t, s, _ in hz if s * 1000 >= args.healthz_limit_ms]
    result = {
        "duration_s": args.duration,
        "mixes": sorted(mixes),
        "baseline_rss_mib": round(baseline / MiB, 1),
        "max_rss_mib": round(max_rss / MiB, 1),
        "rss_samples": len(rss),
        "max_healthz_ms": round(max_hz * 1000, 1),
        "healthz_p50_p99_ms": _percentiles([took for _, took, _ in hz], (50, 99)),
        "healthz_samples": len(hz),
        "healthz_not_200": failed_hz,
        "healthz_over_limit": slow[:20],
        "aborted_at_rss_guard": bool(probe and probe.aborted),
        "server_died": died and not (probe and probe.aborted),
        "error": error,
        "tally": tally.as_dict(),
        "phases": phases,
        "loadavg_at_end": [round(x, 1) for x in os.getloadavg()],  # the machine is shared: say how busy it was
    }
    bound_ok = (max_rss < args.rss_limit_mib * MiB and max_hz * 1000 < args.healthz_limit_ms and not failed_hz
                and not result["aborted_at_rss_guard"])
    result["pass"] = bound_ok and not error and not result["server_died"]
    print(json.dumps(result, indent=2))
    if result["server_died"] or error:
        print(server_log[-3000:], file=sys.stderr)
    print(f"hostile mixes {','.join(sorted(mixes))} for {args.duration:g} s: max RSS {result['max_rss_mib']} MiB "
          f"(limit {args.rss_limit_mib:g}), max /healthz {result['max_healthz_ms']} ms "
          f"(limit {args.healthz_limit_ms:g}), {failed_hz} healthz without a 200: "
          f"{'PASS' if result['pass'] else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if error or result["server_died"] or not rss:
        return 2
    return 0 if bound_ok else 1


if __name__ == "__main__":
    sys.exit(main())
