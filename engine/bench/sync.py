"""Set reconciliation of a large collection: IBLT /sync vs the seed's bloom filter vs a full hash list.

The collection (default 1,000,000 items of ~13 bytes, `item-%08d`) is built in process straight into the
server's per-collection state (engine/sync/collections.Collection: digests, keys, set hash, sketch), not through
1M HTTP requests; item bytes are served from that index (no log reads). Each trial removes d random items from
the client's copy; the client's symbols are derived from the server's sketch prefix minus the missing keys, which
is bit-identical to what the pure-Python client sends (tests/sync/test_pysketch.py). The server side runs the
real SyncService (parse + subtract + peel + lookup + response encoding), timed per request. Bytes include HTTP
request headers as the client sends them (measured with httpx) and an estimate of the response head.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import time

import blake3
import httpx

from engine.client.sync import request_size
from engine.names import encode_user
from engine.native.bloom import BloomFilter, bytes_for_count
from engine.sync import wire
from engine.sync.collections import Collection
from engine.sync.server import SyncService

RESPONSE_HEAD = len(b"HTTP/1.1 200 \r\ncontent-type: application/x-homestream-sync\r\n"
                    b"access-control-allow-origin: *\r\naccess-control-expose-headers: ETag, Event-Id, Location\r\n"
                    b"content-length: 1234567\r\n\r\n")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=1_000_000, help="collection size (default 1,000,000)")
    parser.add_argument("--trials", type=int, default=100, help="trials per d (default 100)")
    parser.add_argument("--d", default="1,10,100,1000,10000", help="missing items per trial, comma-separated")
    parser.add_argument("--bloom-trials", type=int, default=5, help="trials per d of the bloom method (slow)")
    parser.add_argument("--seed", type=int, default=1)


class _Reg:
    def __init__(self, coll):
        self.coll = coll

    def get(self, user, dir_path):
        return self.coll


def _build(n: int):
    user = encode_user(bytes(32))
    values = [b"item-%08d" % i for i in range(n)]
    coll = Collection(user, "/pub/bench/", None)
    coll.reader = lambda c, digest, slot: values[c.slot_of_digest(digest) if slot is None else slot]
    for i, v in enumerate(values):
        coll.add(blake3.blake3(v).digest(), i + 1)
    coll.ensure_symbols(2048)
    return user, coll, values


def _header_bytes(user: str) -> int:
    """Request line + headers of the client's POST /sync (httpx, as engine/client/sync.py sends it)."""
    c = httpx.Client()
    for name in ("user-agent", "accept-encoding", "accept"):
        c.headers.pop(name, None)
    req = c.build_request("POST", f"http://127.0.0.1:6286/sync/{user}/pub/bench/", content=b"",
                          headers={"content-type": "application/x-homestream-sync"})
    size = request_size(req) - len(b"content-length: 0\r\n")
    c.close()
    return size


def _trial_sync(service, coll, values, missing, hdr):
    n = coll.count
    keys = [coll.keys[s] for s in missing]
    digests = [coll.digest_at(s) for s in missing]
    c_count = n - len(missing)
    c_hash = ((coll.total - sum(int.from_bytes(d, "little") for d in digests)) % (1 << 256)).to_bytes(32, "little")
    m = wire.symbols_for(abs(n - c_count))
    upload = resp_meta = 0
    server_times = []
    token, start = b"", 0
    rounds = 0
    got = None
    while rounds < 10:
        rounds += 1
        sk = coll.ensure_symbols(m).copy(m)
        sk.remove_many(keys)
        symbols = sk.to_bytes(start, m - start)
        sk.close()
        op = wire.OP_SKETCH if start == 0 else wire.OP_MORE
        body = wire.encode_request(wire.SyncRequest(op, coll.salt, c_count, c_hash, symbols=symbols,
                                                    nsym=m - start, token=token, start=start))
        upload += hdr + len(str(len(body))) + len(b"content-length: \r\n") + len(body)
        t0 = time.perf_counter()
        req, client = service.parse(body)
        resp = service.answer(coll, req, client)
        out = wire.encode_response(resp)
        server_times.append(time.perf_counter() - t0)
        item_bytes = sum(len(i) for i in resp.items)
        resp_meta += RESPONSE_HEAD + len(out) - item_bytes
        if resp.status == wire.COMPLETE:
            got = resp
            break
        if resp.status != wire.MORE:
            raise RuntimeError(f"unexpected status {resp.status}")
        token, start, m = resp.token, resp.have, resp.need
    ok = got is not None and sorted(got.items) == sorted(values[s] for s in missing) and not got.extra
    return dict(rounds=rounds, upload=upload, meta=resp_meta, server=server_times, ok=ok, symbols=m)


def _trial_bloom(coll, values, missing, hdr_len):
    n = coll.count
    miss = set(missing)
    c_count = n - len(missing)
    f = BloomFilter.for_count(c_count)
    held = b"".join(coll.digest_at(s) for s in range(n) if s not in miss)
    f.add_many(held)
    b64 = base64.b64encode(f.to_bytes()).decode()
    req1 = json.dumps({"id": "x" * 70, "bloomFilter": b64, "count": c_count})
    upload = hdr_len + len(req1)
    # server: its filter for max(count) + the hashes the client's filter lacks
    t0 = time.perf_counter()
    present = f.contains_many(coll.live_digests())
    missing_found = [s for s, hit in enumerate(present) if not hit]
    server_filter = coll.bloom_bytes(bytes_for_count(max(n, c_count)), 7)
    t_server = time.perf_counter() - t0
    hashes = [base64.b64encode(coll.digest_at(s)).decode() for s in missing_found]
    resp1 = len(json.dumps({"count": n, "k": 7, "bloomFilter": base64.b64encode(server_filter).decode(),
                            "missing": hashes}))
    req2 = json.dumps({"id": "x" * 70, "hashes": hashes})
    upload += hdr_len + len(req2)
    resp2_meta = len(b'{"items":[]}') + sum(len('{"id":"","hash":"","base64":""},') + 70 + 44 for _ in hashes)
    f.close()
    missed = len(miss - set(missing_found))
    false_pos = missed  # a missing item hidden by a false positive of the client's filter is never fetched
    return dict(upload=upload, meta=RESPONSE_HEAD * 2 + resp1 + resp2_meta, missed=missed, fp=false_pos,
                rounds=2, server=t_server)


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    ds = [int(x) for x in args.d.split(",") if x.strip()]
    t0 = time.perf_counter()
    print(f"building a {args.items:,}-item collection in process…", file=sys.stderr, flush=True)
    user, coll, values = _build(args.items)
    build_s = time.perf_counter() - t0
    print(f"built in {build_s:.1f} s (keys, set hash, {len(coll.sketch)} symbols)", file=sys.stderr, flush=True)
    service = SyncService(_Reg(coll))
    hdr = _header_bytes(user)
    n = coll.count
    rows = []
    for d in ds:
        d = min(d, n)
        res = []
        for _ in range(args.trials):
            res.append(_trial_sync(service, coll, values, rng.sample(range(n), d), hdr))
        blo = []
        for _ in range(min(args.bloom_trials, args.trials)):
            blo.append(_trial_bloom(coll, values, rng.sample(range(n), d), hdr))
        first = [r["server"][0] for r in res]
        row = {
            "d": d,
            "trials": len(res),
            "one_round_trip_rate": sum(r["rounds"] == 1 for r in res) / len(res),
            "all_correct": all(r["ok"] for r in res),
            "max_round_trips": max(r["rounds"] for r in res),
            "upload_bytes_mean": statistics.mean(r["upload"] for r in res),
            "upload_bytes_max": max(r["upload"] for r in res),
            "upload_budget": 24 * d + 1024,
            "upload_per_item": statistics.mean(r["upload"] for r in res) / d,
            "metadata_bytes_mean": statistics.mean(r["upload"] + r["meta"] for r in res),
            "metadata_per_item": statistics.mean(r["upload"] + r["meta"] for r in res) / d,
            "server_ms_median": statistics.median(first) * 1000,
            "server_ms_p99": sorted(first)[min(len(first) - 1, int(0.99 * len(first)))] * 1000,
            "bloom_trials": len(blo),
            "bloom_upload_bytes": statistics.mean(b["upload"] for b in blo) if blo else None,
            "bloom_total_metadata_bytes": statistics.mean(b["upload"] + b["meta"] for b in blo) if blo else None,
            "bloom_round_trips": 2,
            "bloom_missed_items_mean": statistics.mean(b["missed"] for b in blo) if blo else None,
            "bloom_false_positive_rate": (sum(b["fp"] for b in blo) / (d * len(blo))) if blo else None,
            "bloom_server_ms": statistics.median(b["server"] for b in blo) * 1000 if blo else None,
            "hashlist_bytes": hdr + RESPONSE_HEAD + 32 * n + (hdr + 32 * d + 70),
            "hashlist_round_trips": 2,
        }
        rows.append(row)
        if not args.json:
            print(f"d={d:>6}: 1-RT {row['one_round_trip_rate']:.0%} (max {row['max_round_trips']} RT, "
                  f"correct={row['all_correct']}), upload {row['upload_bytes_mean']:,.0f} B "
                  f"= {row['upload_per_item']:.1f} B/item (budget {row['upload_budget']:,} B, max "
                  f"{row['upload_bytes_max']:,}), upload+metadata {row['metadata_per_item']:.1f} B/item, server "
                  f"{row['server_ms_median']:.2f} ms (p99 {row['server_ms_p99']:.2f}) | bloom: "
                  f"{row['bloom_upload_bytes']:,.0f} B up, {row['bloom_total_metadata_bytes']:,.0f} B total, 2 RT, "
                  f"missed {row['bloom_missed_items_mean']:.1f} items (fp {row['bloom_false_positive_rate']:.2%}) "
                  f"| hash list: {row['hashlist_bytes']:,} B, 2 RT", flush=True)
    if args.json:
        print(json.dumps({"items": n, "build_seconds": build_s, "rows": rows}))
    return 0
