"""Policy micro-benchmark: what SPEC 5.2's checks cost a request that is under every limit.

Times, in process with `timeit`, the calls App._dispatch and the write gate make per request (engine/policy/
gate.py): `begin` (client address + the address's request bucket) and `finish` for a read, `admit_write`
(signup lookup + the user's write bucket) for a write, and the quota guard; beside a bare dict lookup for
scale. Keys rotate over `--clients` addresses and users, so the dicts hold realistic numbers of buckets.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import timeit
from types import SimpleNamespace


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=10_000, help="distinct addresses and users cycled")
    parser.add_argument("--number", type=int, default=200_000, help="calls timed per figure")


def run(args: argparse.Namespace) -> int:
    from ..config import Settings
    from ..http.message import Request, Response, StreamResponse
    from ..policy.gate import Policy
    from ..policy.quota import Quota
    from ..policy.users import UserTable

    with tempfile.TemporaryDirectory(prefix="hs-policy-") as tmp:
        settings = Settings.load(env={}, overrides={"data": tmp, "signup": "token", "user_quota_bytes": 1 << 40,
                                                    "rate_user_writes": 1e9, "rate_ip_requests": 1e9,
                                                    "rate_ip_streams": 1000})
        users = [f"user{i:047d}" for i in range(args.clients)]
        table = UserTable(tmp)
        table.signed_up.update(users)
        keyspace = SimpleNamespace(has_user=lambda u: False)
        policy = Policy(settings, keyspace, table)
        requests = [Request("GET", b"/x", "/x", [], {}, b"", b"1.1", (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                                                                      40000)) for i in range(args.clients)]
        response = Response(200)
        n = args.clients
        state = {"i": 0}

        def read() -> None:
            i = state["i"] = (state["i"] + 1) % n
            policy.begin(requests[i])
            policy.finish(requests[i], response, StreamResponse)

        def write() -> None:
            i = state["i"] = (state["i"] + 1) % n
            policy.admit_write(users[i])

        quota = Quota(1 << 40)

        def guard() -> None:
            quota("u", 1000, 10, 20)

        plain = {u: 1 for u in users}

        def lookup() -> None:
            i = state["i"] = (state["i"] + 1) % n
            plain.get(users[i])

        def per_call(fn) -> float:
            best = min(timeit.repeat(fn, number=args.number, repeat=3))
            return round(best / args.number * 1e9)

        out = {"clients": n, "ns_per_call": {"dict_lookup_baseline": per_call(lookup), "read_begin_finish": per_call(read),
                                             "write_admit": per_call(write), "quota_guard": per_call(guard)}}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v} ns" for k, v in out["ns_per_call"].items()))
    return 0


# ---- `bench http --policy`: homestream with every SPEC 5.2 check on, limits high enough never to refuse ----

POLICY_SERVER = "homestream+policy"


def policy_flags(data: str) -> list[str]:
    """serve flags for the policy-on run: token signups, a quota and all three rate limits (never reached)."""
    import os

    secret = os.path.join(os.path.dirname(data) or ".", "admin.secret")
    with open(secret, "w") as fh:
        fh.write(os.urandom(16).hex())
    return ["--signup", "token", "--user-quota-bytes", str(1 << 40), "--rate-user-writes", "1000000",
            "--rate-ip-requests", "1000000", "--rate-ip-streams", "1000", "--admin-secret-file", secret]


def sign_up_bench_user(port: int, data: str, seed: bytes) -> None:
    """Issue a token through the admin API and spend it for the bench's signing key (raises on failure)."""
    import os

    import httpx
    import nacl.signing

    from ..http.auth import sign_request

    secret = open(os.path.join(os.path.dirname(data) or ".", "admin.secret")).read().strip()
    url = f"http://127.0.0.1:{port}"
    token = httpx.post(url + "/admin/signup-tokens", headers={"authorization": f"Bearer {secret}"}).json()["token"]
    auth = sign_request(nacl.signing.SigningKey(seed), "POST", "/signup", b"")
    r = httpx.post(f"{url}/signup?token={token}", headers={"authorization": auth})
    if r.status_code != 201:
        raise RuntimeError(f"bench user signup failed: {r.status_code} {r.text}")
