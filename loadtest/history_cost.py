"""What a sparse history page costs (issue 21 item 5): N private records then one public one, and
`GET /events/?cursor=0&limit=1` timed against a real `homestream serve`, with /healthz probed meanwhile.

    python loadtest/history_cost.py --records 300000 [--code DIR] [--data DIR] [--runs 3]

`--code DIR` runs the server from another checkout (for a before/after comparison: the same data directory, the
same machine); the data directory is built once with this checkout's Log and reused when it exists. Prints one
JSON object. Talks only to 127.0.0.1, on a free port; the server it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_data(data: Path, records: int) -> None:
    from engine.log.record import PUT
    from engine.log.store import Log
    from engine.names import encode_user

    if (data / "built").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    user = encode_user(b"\x07" * 32)
    log = Log.open(str(data), fsync="never")
    try:
        for i in range(records):
            log.append(PUT, user, f"/priv/notes/{i}", b"private value %d" % i)
        log.append(PUT, user, "/pub/the-one", b"public")
        log.flush()
    finally:
        log.close()
    (data / "built").write_text(str(records))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(code: Path, data: Path, runs: int) -> dict:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(code))
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--data", str(data), "--port", str(port)],
                            cwd=str(code), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        page_s, healthz_max = [], []
        body = ""
        with httpx.Client(timeout=60) as c, httpx.Client(timeout=60) as probe:
            for _ in range(runs):
                stop = threading.Event()
                worst = [0.0]

                def prober() -> None:
                    while not stop.is_set():
                        t0 = time.perf_counter()
                        probe.get(url + "/healthz")
                        worst[0] = max(worst[0], time.perf_counter() - t0)

                th = threading.Thread(target=prober)
                th.start()
                time.sleep(0.05)
                t0 = time.perf_counter()
                r = c.get(url + "/events/", params={"cursor": 0, "limit": 1})
                page_s.append(time.perf_counter() - t0)
                time.sleep(0.05)
                stop.set()
                th.join()
                healthz_max.append(worst[0])
                body = r.text
        return {"code": str(code), "page_s": [round(x, 4) for x in page_s],
                "healthz_max_s": [round(x, 4) for x in healthz_max], "body": body[:200]}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--code", default=str(ROOT), help="checkout whose server is measured (default: this one)")
    ap.add_argument("--data", default="/tmp/homestream-history-cost")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    data = Path(args.data)
    build_data(data, args.records)
    out = measure(Path(args.code), data, args.runs)
    out["records"] = args.records
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
