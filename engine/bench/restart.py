"""Restart benchmark: open a large log with and without the key-index checkpoint (issue 18 item 6).

Builds a log (fsync=never) of `--records` records over `--keys` keys, writes a checkpoint at its end, appends
`--after` more records (the checkpoint is then stale by that much, as after a crash), and times
`Keyspace.open` in a fresh process twice: with the checkpoint and with `use_checkpoint=False` (the full rebuild).
Target: under 2 s with 10 M records and 1 M keys.

Examples:
  homestream bench restart --records 10000000 --keys 1000000
  homestream bench restart --records 1000000 --keys 100000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=10_000_000, help="records to append (default 10,000,000)")
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct keys (default 1,000,000)")
    parser.add_argument("--after", type=int, default=10_000, help="records appended after the checkpoint")
    parser.add_argument("--value-bytes", type=int, default=100, help="bytes per value (default 100)")
    parser.add_argument("--dir", default=None, help="log directory (reused if it holds a log)")
    parser.add_argument("--keep", action="store_true", help="keep the log directory")
    parser.add_argument("--loop-checkpoint", action="store_true",
                        help="also take a checkpoint from an event loop and report its longest step on the loop")


def _build(directory: str, records: int, keys: int, after: int, value_bytes: int) -> dict:
    from engine.keyspace import Keyspace
    from engine.names import encode_user

    users = [encode_user(bytes([i + 1]) * 32) for i in range(10)]
    ks = Keyspace.open(directory, fsync="never", use_checkpoint=False)
    value = b"v" * value_bytes
    append = ks.put
    t0 = time.perf_counter()
    for i in range(records - after):
        k = i % keys
        append(users[k % 10], f"/pub/k/{k}", value)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = ks.checkpoint_writer().run_sync()
    info["checkpoint_write_seconds"] = round(time.perf_counter() - t0, 3)
    for i in range(after):
        append(users[i % 10], f"/pub/after/{i % 1000}", value)
    ks.delete(users[0], "/pub/k/0")
    ks.close()
    info["build_seconds"] = round(build_s, 1)
    return info


def _open_child(directory: str, use_checkpoint: bool) -> dict:
    code = ("import json,sys,time;from engine.keyspace import Keyspace;t=time.perf_counter();"
            f"ks=Keyspace.open({directory!r}, use_checkpoint={use_checkpoint});dt=time.perf_counter()-t;"
            "print(json.dumps({'seconds':round(dt,3),'keys':ks.count,'last_seq':ks.log.last_seq,"
            "'checkpoint_used':ks.checkpoint_used}));ks.close()")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=dict(os.environ))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _checkpoint_child(directory: str) -> dict:
    """In a fresh process: take a checkpoint from a loop; its time and the longest piece it ran on the loop."""
    code = ("import asyncio,json,time;from engine.keyspace import Keyspace;ks=Keyspace.open(%r)\n"
            "async def main():\n"
            "    w=ks.checkpoint_writer();r=await w.run();r['longest_loop_step_ms']=round(w.longest_step*1000,2)\n"
            "    print(json.dumps(r))\n"
            "asyncio.run(main());ks.close()" % directory)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=dict(os.environ))
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    directory = args.dir or tempfile.mkdtemp(prefix="hs-bench-restart-")
    try:
        out: dict = {"records": args.records, "keys": args.keys}
        if not os.path.exists(os.path.join(directory, "checkpoint.bin")):
            out["build"] = _build(directory, args.records, args.keys, args.after, args.value_bytes)
            print(f"built: {out['build']}", flush=True)
        out["with_checkpoint"] = _open_child(directory, True)
        out["full_rebuild"] = _open_child(directory, False)
        if args.loop_checkpoint:
            out["checkpoint_from_a_loop"] = _checkpoint_child(directory)
        out["same_index"] = (out["with_checkpoint"]["keys"] == out["full_rebuild"]["keys"]
                             and out["with_checkpoint"]["last_seq"] == out["full_rebuild"]["last_seq"])
        if args.json:
            print(json.dumps(out))
        else:
            for k, v in out.items():
                print(f"{k:18} {v}")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
    return 0
