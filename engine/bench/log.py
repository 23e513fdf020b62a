"""Log benchmark: appends (fsync=batch), raw replay, reopen+recover with the key index, index memory per key.

Targets (issue 3): >= 250,000 appends/s of 100-byte values in-process with fsync=batch; >= 1,000,000 records/s
replayed from the start as raw slices; reopen and recover a 1,000,000-record log with 100,000 keys in < 2 s
(keyspace rebuild included); < 200 bytes of key index memory per key (RssAnon delta / keys, measured in a fresh
process so that freed memory of the append phase cannot hide it).

Examples:
  homestream bench log
  homestream bench log --records 200000 --keys 20000 --json
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

USERS = 10


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=1_000_000, help="records to append (default 1,000,000)")
    parser.add_argument("--keys", type=int, default=100_000, help="distinct keys written (default 100,000)")
    parser.add_argument("--value-bytes", type=int, default=100, help="bytes per value (default 100)")
    parser.add_argument("--dir", default=None, help="log directory (default: a fresh temp dir, removed after)")
    parser.add_argument("--segment-bytes", type=int, default=64 << 20, help="segment size (default 64 MiB)")
    parser.add_argument("--fsync", default="batch", choices=("always", "batch", "never"))
    parser.add_argument("--keep", action="store_true", help="keep the log directory")


def _users() -> list[str]:
    from engine.names import encode_user
    return [encode_user(bytes([i + 1]) * 32) for i in range(USERS)]


def _rss_anon() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _reopen(directory: str, segment_bytes: int) -> dict:
    """Run in a fresh process: time Keyspace.open and measure the anonymous memory it keeps."""
    import gc
    from engine.keyspace import Keyspace
    gc.collect()
    before = _rss_anon()
    t0 = time.perf_counter()
    ks = Keyspace.open(directory, segment_bytes=segment_bytes)
    dt = time.perf_counter() - t0
    gc.collect()
    after = _rss_anon()
    keys = ks.count
    records = ks.log.last_seq
    # the same index again, built by a second pass over the open log, to isolate the index's own memory
    ks.close()
    return {"reopen_seconds": dt, "keys": keys, "records": records, "rss_delta_bytes": after - before,
            "truncated_bytes": ks.log.stats.truncated_bytes_total}


def run(args: argparse.Namespace) -> int:
    from engine.log.record import PUT
    from engine.log.store import Log
    from engine.log.record import decode_records

    own_dir = args.dir is None
    directory = args.dir or tempfile.mkdtemp(prefix="homestream-bench-log-")
    results: dict = {"records": args.records, "keys": args.keys, "value_bytes": args.value_bytes,
                     "fsync": args.fsync}
    try:
        users = _users()
        n, k = args.records, max(1, args.keys)
        per_user = max(1, k // USERS)
        paths = [f"/pub/bench/k{i:07d}" for i in range(per_user)]
        value = os.urandom(args.value_bytes)
        log = Log.open(directory, segment_bytes=args.segment_bytes, fsync=args.fsync)
        append = log.append
        t0 = time.perf_counter()
        for i in range(n):
            j = i % k
            append(PUT, users[j % USERS], paths[(j // USERS) % per_user], value)
            if i % 100_000 == 99_999:
                log.wait_durable_sync(log.last_seq)
        log.wait_durable_sync(log.last_seq)
        dt = time.perf_counter() - t0
        results["append_seconds"] = dt
        results["appends_per_second"] = n / dt
        results["commits"] = log.stats.commits_total
        results["log_bytes"] = log.size_bytes

        t0 = time.perf_counter()
        count = 0
        nbytes = 0
        for first, last, view in log.read_raw(1):
            count += last - first + 1
            nbytes += len(view)
        dt = time.perf_counter() - t0
        results["replay_raw_records"] = count
        results["replay_raw_seconds"] = dt
        results["replay_raw_records_per_second"] = count / dt if dt else float("inf")
        results["replay_raw_mib_per_second"] = nbytes / dt / (1 << 20) if dt else float("inf")

        from engine.native.hashing import crc32c
        t0 = time.perf_counter()
        for first, last, view in log.read_raw(1):
            crc32c(view)  # touch every byte, as sending the slices would
        dt = time.perf_counter() - t0
        results["replay_raw_read_records_per_second"] = count / dt if dt else float("inf")

        sample = min(n, 200_000)
        t0 = time.perf_counter()
        decoded = 0
        for first, last, view in log.read_raw(1, until=sample):
            for _rec in decode_records(view):
                decoded += 1
        dt = time.perf_counter() - t0
        results["replay_decoded_records_per_second"] = decoded / dt if dt else float("inf")
        log.close()

        out = subprocess.run(
            [sys.executable, "-c",
             "import json,sys; from engine.bench.log import _reopen; "
             "print(json.dumps(_reopen(sys.argv[1], int(sys.argv[2]))))", directory, str(args.segment_bytes)],
            capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        reopen = json.loads(out.stdout.strip().splitlines()[-1])
        results["reopen_seconds"] = reopen["reopen_seconds"]
        results["reopen_keys"] = reopen["keys"]
        results["index_bytes_per_key"] = reopen["rss_delta_bytes"] / max(1, reopen["keys"])
    finally:
        if own_dir and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)

    targets = {
        "appends_per_second": (results["appends_per_second"] >= 250_000, ">= 250,000"),
        "replay_raw_records_per_second": (results["replay_raw_records_per_second"] >= 1_000_000, ">= 1,000,000"),
        "reopen_seconds": (results["reopen_seconds"] < 2.0, "< 2 s"),
        "index_bytes_per_key": (results["index_bytes_per_key"] < 200, "< 200"),
    }
    results["targets_met"] = {name: ok for name, (ok, _) in targets.items()}
    if getattr(args, "json", False):
        print(json.dumps(results, sort_keys=True))
    else:
        print(f"log bench: {n:,} records of {args.value_bytes} B, {k:,} keys, fsync={args.fsync}")
        print(f"  append           {results['appends_per_second']:>14,.0f} appends/s   "
              f"({results['append_seconds']:.2f} s, {results['commits']} commits)  target {targets['appends_per_second'][1]}")
        print(f"  replay raw       {results['replay_raw_records_per_second']:>14,.0f} records/s   "
              f"({results['replay_raw_mib_per_second']:,.0f} MiB/s)  target {targets['replay_raw_records_per_second'][1]}")
        print(f"  replay raw+read  {results['replay_raw_read_records_per_second']:>14,.0f} records/s   "
              "(every byte read: CRC32C of each slice)")
        print(f"  replay decoded   {results['replay_decoded_records_per_second']:>14,.0f} records/s   (Record objects)")
        print(f"  reopen+recover   {results['reopen_seconds']:>14.3f} s           "
              f"({results['reopen_keys']:,} keys rebuilt)  target {targets['reopen_seconds'][1]}")
        print(f"  index memory     {results['index_bytes_per_key']:>14.1f} B/key       target "
              f"{targets['index_bytes_per_key'][1]}")
        for name, ok in results["targets_met"].items():
            if not ok:
                print(f"  MISSED: {name}")
    return 0
