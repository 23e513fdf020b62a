"""`homestream cluster status`: the cluster as NATS sees it -- the stream's seqs, who holds the origin's lease,
and every live node's role, applied seq and lag (from the node registry each node refreshes every second).

Invariant: read-only; it needs only the NATS URLs, not any node. Exit 0 when an origin holds the lease, 1 when
none does or NATS cannot be reached (so it can serve as a check in scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

EXAMPLES = """
examples:
  homestream cluster status --cluster nats://10.0.0.1:4222,nats://10.0.0.2:4222
  homestream cluster status --cluster nats://127.0.0.1:4222 --cluster-name homestream --json
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    status = sub.add_parser("status", help="print the nodes, roles, applied seqs and lag",
                            description="print the nodes, roles, applied seqs and lag")
    status.add_argument("--cluster", required=True, metavar="URLS",
                        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
                        help="NATS server URLs, comma-separated (as given to `serve --cluster`)")
    status.add_argument("--cluster-name", default="homestream", help="the cluster's name (default: homestream)")
    status.add_argument("--json", action="store_true", help="print one JSON object")


async def gather(urls: list[str], cluster_name: str) -> dict:
    from nats.js.errors import BucketNotFoundError, NotFoundError

    from ..cluster.jetstream import Cluster, Names, connect
    from ..cluster.lease import Lease

    nc = await connect(urls, "homestream-status", patient=False)
    try:
        cluster = Cluster(nc, Names(cluster_name))
        try:
            first, last = await cluster.stream_state()
            cluster.lease_kv = await cluster.js.key_value(cluster.names.lease_bucket)
            cluster.nodes_kv = await cluster.js.key_value(cluster.names.nodes_bucket)
        except (NotFoundError, BucketNotFoundError):
            raise RuntimeError(f"no cluster named {cluster_name!r} on these NATS servers") from None
        holder = await Lease(cluster.lease_kv, "", "").holder()
        nodes = sorted(await cluster.nodes(), key=lambda n: (n.get("role") != "origin", n.get("node", "")))
    finally:
        await nc.close()
    return {"cluster": cluster_name, "stream": {"first_seq": first, "last_seq": last},
            "origin": None if holder is None else {"node": holder.node, "url": holder.url},
            "nodes": nodes}


def render(status: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    stream = status["stream"]
    origin = status["origin"]
    lines = [f"cluster {status['cluster']}: stream seqs {stream['first_seq']}..{stream['last_seq']}, origin "
             + (f"{origin['node']} ({origin['url']})" if origin else "NONE (the lease is free)")]
    header = ("NODE", "ROLE", "APPLIED", "LAG", "LAG_S", "SEEN", "URL")
    rows = [header]
    for n in status["nodes"]:
        lag = max(0, stream["last_seq"] - n.get("applied_seq", 0))
        rows.append((n.get("node", "?"), n.get("role", "?"), str(n.get("applied_seq", "?")), str(lag),
                     f"{n.get('lag_s', 0):.3f}", f"{max(0.0, now - n.get('at', now)):.1f}s ago", n.get("url", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if not status["nodes"]:
        lines.append("(no node has reported in the last seconds)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) != "status":
        print("homestream cluster: error: name an action: status", file=sys.stderr)
        return 2
    try:
        status = asyncio.run(asyncio.wait_for(gather(args.cluster, args.cluster_name), 15))
    except Exception as exc:
        print(f"homestream cluster status: error: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 1
    print(json.dumps(status) if args.json else render(status))
    return 0 if status["origin"] else 1
