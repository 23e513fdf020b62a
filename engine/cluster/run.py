"""`homestream serve --cluster ...`: the process of a cluster node.

Connect to NATS and set the stream and buckets up; then, until SIGTERM: build the application from the log
(recovery runs there), make the log a prefix of the stream (engine/cluster/rejoin.py: truncating a deposed
origin's records the stream never took, and logging how many), serve as a replica (engine/cluster/node.py),
and when the node ends itself -- fenced, deposed, or unable to apply -- shut the listener and streams down and
build it again. Subscribers reconnect and resume with Last-Event-ID, as after any restart.
Invariant: no HTTP request is served before the log agrees with the stream.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

from ..config import Settings
from . import snapshot
from .jetstream import RECORD_HEADROOM, Cluster, Names, connect, patiently
from .lease import Lease
from .node import ClusterNode, Survivor
from .rejoin import divergence

log = logging.getLogger("homestream.cluster")


def fill_identity(settings: Settings) -> Settings:
    """Default --node and --advertise-url from the host and port."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else socket.gethostname()
    if not settings.advertise_url:
        settings.advertise_url = f"http://{host}:{settings.port}"
    if not settings.node:
        settings.node = f"{socket.gethostname()}-{settings.port}"
    return settings


async def _connect(settings: Settings, stop: asyncio.Event) -> Cluster | None:
    """Connected and set up, or None if told to stop first (nats-py retries the servers meanwhile)."""
    connecting = asyncio.ensure_future(connect(settings.cluster, settings.node))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([connecting, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        return None
    nc = connecting.result()
    cluster = Cluster(nc, Names(settings.cluster_name))
    # idempotent, so it is retried while the JetStream cluster is still electing leaders (a fresh or busy cluster
    # answers "nats: timeout" for a few seconds)
    await patiently("stream and buckets", lambda: cluster.setup(
        replicas=settings.cluster_replicas, lease_ttl=settings.lease_ttl, max_age=settings.stream_max_age,
        max_record=settings.max_body_bytes + RECORD_HEADROOM), attempts=12)
    return cluster


async def _build(settings: Settings, cluster: Cluster, survivor: Survivor) -> Any:
    """The app over a log that is a prefix of the stream."""
    from ..log.store import Log
    from ..server import build_app

    first, _last = await patiently("stream state", cluster.stream_state)
    if first > 1 and snapshot.needs_snapshot(settings.data):
        # the stream no longer starts at seq 1: copy a live node's log, then follow the stream from its end
        settings.data_path.mkdir(parents=True, exist_ok=True)
        urls = snapshot.sources(await cluster.nodes(), settings.node, first)
        await asyncio.to_thread(snapshot.fetch, settings.data, urls, cluster.secret)
    app = build_app(settings)
    holder = await patiently("lease", Lease(cluster.lease_kv, settings.node, settings.advertise_url).holder)
    keep = await divergence(cluster, app.log, holder is not None and holder.node != settings.node)
    if keep is None:
        return app
    _close_app(app)
    with Log.open(settings.data, segment_bytes=settings.segment_bytes, fsync=settings.fsync) as log_:
        dropped = log_.truncate_after(keep)
    survivor.records_dropped_total += dropped
    log.warning("rejoin: dropped %d local record(s) after seq %d that the stream does not hold", dropped, keep)
    return build_app(settings)


def _close_app(app: Any) -> None:
    if app.hub is not None:
        app.hub.close()
    app.log.close()


async def serve_clustered(settings: Settings, ready: Any = None) -> int:
    from ..server import Server

    fill_identity(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        cluster = await _connect(settings, stop)
    except RuntimeError as exc:  # the NATS servers cannot carry this node's records
        log.error("cannot join the cluster: %s", exc)
        return 1
    if cluster is None:
        return 0
    survivor = Survivor()
    log.info("cluster %s: node %s at %s, --replication-ack %s", settings.cluster_name, settings.node,
             settings.advertise_url, settings.replication_ack)
    try:
        while not stop.is_set():
            try:
                app = await _build(settings, cluster, survivor)
            except RuntimeError as exc:  # no snapshot to be had, or a log from another cluster
                log.error("cannot join the cluster: %s", exc)
                return 1
            node = ClusterNode(settings, app, cluster, survivor)
            server = Server(settings, app, loop)
            try:
                await node.start()
            except RuntimeError as exc:  # the stream no longer holds what this node needs next
                _close_app(app)
                log.error("cannot follow the stream: %s", exc)
                return 1
            except Exception:
                _close_app(app)
                raise
            await server.start()
            if ready is not None:
                ready(server, node)
            stopping = loop.create_task(stop.wait())
            ending = loop.create_task(node.done.wait())
            await asyncio.wait([stopping, ending], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            ending.cancel()
            if not stop.is_set():
                # writes whose records the cluster may never take: their outcome is unknown, as after a crash
                for conn in list(server.waiting):
                    if conn.transport is not None:
                        conn.transport.abort()
            await node.stop(release=stop.is_set())
            await server.shutdown()
            if app.hub is not None:
                app.hub.close()
            app.log.close()
            if not stop.is_set():
                survivor.rebuilds_total += 1
                log.warning("cluster: rebuilding this node as a replica: %s", node.outcome)
    finally:
        await cluster.close()
    log.info("stopped cleanly")
    return 0
