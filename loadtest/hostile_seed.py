"""The hostile seed-API mix of issue 21 item 4 against a real `homestream serve`, with the server's RSS and the
worst /healthz latency recorded throughout.

    python loadtest/hostile_seed.py [--seconds 30] [--code DIR] [--items 2000]

/healthz is probed from a separate process (the attackers' threads share one interpreter). Clients, all anonymous
and small: (a) `POST /get` naming one public storage 40,000 times in a ~3 MB body, on
sockets that never read the answer; (b) `GET /bloom?count=200000000`; (c) `POST /sync` claiming 10^12 items with
a sketch of 100,000 symbols. The storage holds `--items` items of ~800 bytes. `--code DIR` runs another
checkout's server (before/after). Prints one JSON object. 127.0.0.1 only, a free port; the server is stopped by
its pid, every client socket is closed at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def probe_healthz(url: str, pid: int, seconds: float, out: "multiprocessing.Queue") -> None:
    """GET /healthz every 50 ms for `seconds`: (worst latency s, failures, worst server RSS MiB)."""
    worst, fails, rss_max = 0.0, 0, 0.0
    end = time.monotonic() + seconds
    with httpx.Client(timeout=30) as c:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                c.get(url + "/healthz")
            except httpx.HTTPError:
                fails += 1
            worst = max(worst, time.perf_counter() - t0)
            rss_max = max(rss_max, rss_mib(pid))
            time.sleep(0.05)
    out.put((worst, fails, rss_max))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--code", default=str(ROOT))
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--attackers", default="get,bloom,sync",
                    help="which clients run (comma-separated; 'none' measures /healthz alone, a control run)")
    args = ap.parse_args()

    from engine.http.auth import sign_request
    from engine.names import content_digest, encode_user
    from engine.sync import wire
    from engine.sync.keys import KeyDeriver, collection_key
    from engine.sync.pysketch import PySketch
    import nacl.signing

    key = nacl.signing.SigningKey(b"\x09" * 32)
    user = encode_user(bytes(key.verify_key))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tempfile.mkdtemp(prefix="homestream-hostile-")
    env = dict(os.environ, PYTHONPATH=args.code)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--data", data, "--port", str(port)],
                            cwd=args.code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        target = f"/{user}/pub/feed/"
        with httpx.Client() as c:
            for i in range(args.items):
                body = json.dumps({"i": i, "text": "x" * 780}).encode()
                r = c.post(url + target, content=body, headers={"authorization": sign_request(key, "POST", target,
                                                                                              body)})
                assert r.status_code in (200, 201), r.text
        storage = f"{user}/pub/feed/"
        get_body = json.dumps({"items": [storage] * 40_000}).encode()
        derive = KeyDeriver(collection_key(user, "/pub/feed/"))
        sk = PySketch(derive.salt, 0)
        for i in range(2000):
            sk.add(derive(content_digest(b"c%d" % i)))
        sk.extend(100_000)
        sync_body = wire.encode_request(wire.SyncRequest(wire.OP_SKETCH, salt=derive.salt, count=10**12,
                                                         set_hash=bytes(32), symbols=sk.to_bytes(0, 100_000),
                                                         nsym=100_000))
        rss0 = rss_mib(proc.pid)
        stop = threading.Event()
        stats = {"get_sent": 0, "bloom": {}, "sync": {}, "healthz_max_s": 0.0, "healthz_fail": 0, "rss_max_mib": rss0}

        def get_attacker() -> None:  # never reads: each answer waits in the server for a reader that never comes
            while not stop.is_set() and len(socks) < 400:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", port))
                s.sendall(b"POST /get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d"
                          b"\r\n\r\n" % len(get_body) + get_body)
                socks.append(s)
                stats["get_sent"] += 1
                time.sleep(0.05)

        def small_attacker(path: str, kind: str, **kw) -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    try:
                        r = c.request(kind, url + path, **kw)
                        stats_key = "bloom" if "bloom" in path else "sync"
                        stats[stats_key][r.status_code] = stats[stats_key].get(r.status_code, 0) + 1
                    except httpx.HTTPError:
                        pass

        probe_q: multiprocessing.Queue = multiprocessing.Queue()
        probe = multiprocessing.Process(target=probe_healthz, args=(url, proc.pid, args.seconds + 1, probe_q))

        def prober() -> None:  # in its own process: the attackers' threads must not delay its clock (GIL)
            probe.start()
            worst, fails, rss_max = probe_q.get()
            probe.join()
            stats["healthz_max_s"], stats["healthz_fail"] = worst, fails
            stats["rss_max_mib"] = max(stats["rss_max_mib"], rss_max)

        chosen = set(args.attackers.split(","))
        threads = [threading.Thread(target=prober)]
        if "get" in chosen:
            threads.append(threading.Thread(target=get_attacker))
        if "bloom" in chosen:
            threads.append(threading.Thread(target=small_attacker,
                                            args=(f"/bloom?id={storage}&count=200000000", "GET")))
        if "sync" in chosen:
            threads.append(threading.Thread(target=small_attacker, args=(f"/sync/{storage}", "POST"),
                                            kwargs={"content": sync_body}))
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join(60)
        stats["rss_start_mib"] = round(rss0, 1)
        stats["rss_max_mib"] = round(stats["rss_max_mib"], 1)
        stats["healthz_max_s"] = round(stats["healthz_max_s"], 3)
        stats["code"] = args.code
        stats["attackers"] = args.attackers
        print(json.dumps(stats))
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
