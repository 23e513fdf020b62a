"""Set reconciliation of a large collection: IBLT /sync vs the seed's bloom filter vs a full hash list.

The collection (default 1,000,000 items of ~13 bytes, `item-%08d`) is built in process straight into the
server's per-collection state (engine/sync/collections.Collection: digests, keys, set hash, sketch), not through
1M HTTP requests; item bytes are served from that index (no log reads). Each trial removes d random items from
the client's copy; the client's symbols are derived from the server's sketch prefix minus the missing keys, which
is bit-identical to what the pure-Python client sends (tests/sync/test_pysketch.py). The server side runs the
real SyncService (parse + subtract + peel + lookup + response encoding), timed per request. Bytes include HTTP
request headers as the client sends them (measured with httpx) and an estimate of the response head.

Targets: one round trip in the usual case (at least 99 % of the trials), every result correct, and an upload of
at most 24 bytes per differing item + 1 KiB. The default run uses 200,000 items and 20 trials per d (about a
minute); --full uses 1,000,000 items and 100 trials.
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

from engine.bench.common import Figure, Progress, add_size_options, pick, positive_int, report, table
from engine.names import encode_user
from engine.sync import wire

# the server side, the C core and httpx are imported where they are used: every command builds this module's
# parser, and should not pay for loading them

RESPONSE_HEAD = len(b"HTTP/1.1 200 \r\ncontent-type: application/x-homestream-sync\r\n"
                    b"access-control-allow-origin: *\r\naccess-control-expose-headers: ETag, Event-Id, Location\r\n"
                    b"content-length: 1234567\r\n\r\n")


def configure(parser: argparse.ArgumentParser) -> None:
    add_size_options(parser, "200,000 items, 20 trials per d", "1,000,000 items, 100 trials per d")
    parser.add_argument("--items", type=positive_int, default=None,
                        help="collection size (default: 200,000; --full: 1,000,000)")
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="trials per d (default: 20; --full: 100)")
    parser.add_argument("--d", default="1,10,100,1000,10000",
                        help="missing items per trial, comma-separated (default: 1,10,100,1000,10000)")
    parser.add_argument("--bloom-trials", type=positive_int, default=None,
                        help="trials per d of the bloom method, which is slow (default: 2; --full: 5)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")


class _Reg:
    def __init__(self, coll):
        self.coll = coll

    def get(self, user, dir_path):
        return self.coll


def _build(n: int, progress: Progress | None = None):
    from engine.sync.collections import Collection

    user = encode_user(bytes(32))
    values = [b"item-%08d" % i for i in range(n)]
    coll = Collection(user, "/pub/bench/", None)
    coll.reader = lambda c, digest, slot: values[c.slot_of_digest(digest) if slot is None else slot]
    for i, v in enumerate(values):
        coll.add(blake3.blake3(v).digest(), i + 1)
        if progress is not None and i % 50_000 == 49_999:
            progress.step(f"building the collection {i + 1:,}/{n:,}")
    coll.ensure_symbols(2048)
    return user, coll, values


def _header_bytes(user: str) -> int:
    """Request line + headers of the client's POST /sync (httpx, as engine/client/sync.py sends it)."""
    import httpx

    from engine.client.sync import request_size

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
    from engine.native.bloom import BloomFilter, bytes_for_count

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
    items = pick(args, "items", 200_000, 1_000_000)
    trials = pick(args, "trials", 20, 100)
    bloom_trials = pick(args, "bloom_trials", 2, 5)
    try:
        ds = [int(x) for x in args.d.split(",") if x.strip()]
        if not ds or min(ds) < 1:
            raise ValueError
    except ValueError:
        print(f"homestream bench: error: --d must be positive whole numbers, comma-separated, not {args.d!r}",
              file=sys.stderr)
        return 2
    from engine.sync.server import SyncService

    progress = Progress("bench sync")
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    user, coll, values = _build(items, progress)
    build_s = time.perf_counter() - t0
    progress.note(f"built a {items:,}-item collection in {build_s:.1f} s (keys, set hash, "
                  f"{len(coll.sketch)} symbols)")
    service = SyncService(_Reg(coll))
    hdr = _header_bytes(user)
    n = coll.count
    rows = []
    for d in ds:
        d = min(d, n)
        res = []
        for t in range(trials):
            progress.step(f"d={d:,}: IBLT trial {t + 1}/{trials}")
            res.append(_trial_sync(service, coll, values, rng.sample(range(n), d), hdr))
        blo = []
        for t in range(min(bloom_trials, trials)):
            progress.step(f"d={d:,}: bloom trial {t + 1}/{min(bloom_trials, trials)}")
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
    progress.note("done")
    if args.json:
        print(json.dumps({"items": n, "build_seconds": build_s, "rows": rows}))
        return 0
    figures = []
    for r in rows:
        d = r["d"]
        figures += [
            Figure(f"d={d:,}: one round trip", r["one_round_trip_rate"] * 100, "% of trials", ">=", 99,
                   note=f"{r['trials']} trials, at most {r['max_round_trips']} round trip"
                        f"{'s' if r['max_round_trips'] != 1 else ''}"),
            Figure(f"d={d:,}: results correct", 100.0 if r["all_correct"] else 0.0, "% of trials", ">=", 100),
            Figure(f"d={d:,}: upload (worst trial)", r["upload_bytes_max"], "bytes", "<=", r["upload_budget"],
                   note=f"mean {r['upload_per_item']:.1f} bytes per missing item"),
            Figure(f"d={d:,}: server time per request", r["server_ms_median"], "ms",
                   note=f"p99 {r['server_ms_p99']:.2f} ms"),
        ]
    report(f"bench sync: a {n:,}-item collection, d items missing on the client, {trials} trials per d", figures)
    print("the same differences by the seed's bloom filter and by a full hash list (bytes of upload + metadata):")
    print(table([[f"{r['d']:,}", f"{r['metadata_bytes_mean']:,.0f} B, 1 RT",
                  f"{r['bloom_total_metadata_bytes']:,.0f} B, 2 RT, {r['bloom_missed_items_mean']:.1f} items missed"
                  if r["bloom_trials"] else "-", f"{r['hashlist_bytes']:,} B, 2 RT"] for r in rows],
                ["d", "IBLT /sync", "bloom filter", "hash list"]))
    return 0
