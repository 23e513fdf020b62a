"""One cluster node's roles: replica (apply the stream, send writes to the origin) or origin (write, publish to
the stream), and the lease that decides which.

Every node starts as a replica. A replica that finds the lease free and has applied the whole stream takes it
and is promoted in place: its applier stops, the gate starts holding commits for JetStream's acknowledgement
(with --replication-ack cluster) and the publisher takes the log from the stream's last seq + 1. An origin that
is fenced by the stream, loses its lease to another node, or cannot renew it within the TTL, and a replica that
cannot apply the stream in order, end the node (`done`): engine/cluster/run.py then rebuilds it from its log
and the stream, as a replica. Every node also writes what it is (role, seqs, URL) to the node registry each
second, for `homestream cluster status`.
Invariants: at most one role at a time; writes are accepted only while this node is the origin; the publisher
and the applier never run together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from . import snapshot
from .applier import Applier
from .apply import apply_record
from .gate import ReplicationGate
from .lease import Lease
from .publisher import Publisher
from .writes import write_guard

log = logging.getLogger("homestream.cluster")

REGISTRY_INTERVAL = 1.0


class Survivor:
    """Counters that outlive the node's in-place rebuilds (one process, many ClusterNodes)."""

    def __init__(self) -> None:
        self.rebuilds_total = 0
        self.records_dropped_total = 0
        self.lease_changes_total = 0


class ClusterNode:
    def __init__(self, settings: Any, app: Any, cluster: Any, survivor: Survivor):
        self.settings = settings
        self.app = app
        self.cluster = cluster
        self.survivor = survivor
        self.name = settings.node
        self.url = settings.advertise_url
        self.role = "replica"
        self.origin_url: str | None = None
        self.origin_node: str | None = None
        self.gate = app.gate = ReplicationGate(app.log)
        self.lease = Lease(cluster.lease_kv, self.name, self.url)
        self.applier = Applier(cluster, app.log, lambda data: apply_record(app.keyspace, data), self._end)
        self.publisher: Publisher | None = None
        self.done = asyncio.Event()
        self.outcome = ""
        self._tasks: list[asyncio.Task] = []
        self._renewed_at = 0.0
        self._seen_revision = 0
        app.write_guard = write_guard(lambda: self.role == "origin", lambda: self.origin_url)
        app.extensions["cluster"] = self
        snapshot.install(app)
        self._metrics()

    # ---- lifecycle ----

    async def start(self) -> None:
        await self.applier.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._lease_loop()), loop.create_task(self._registry_loop())]

    async def stop(self, *, release: bool) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        await self.applier.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if release and self.role == "origin":
            await self.lease.release()
        try:
            await self.cluster.nodes_kv.delete(self.name)
        except Exception:
            pass

    def _end(self, reason: str) -> None:
        if not self.done.is_set():
            self.outcome = reason
            if self.role == "origin":  # take no more writes: until the rebuild they are answered 503
                self.role = "deposed"
                self.origin_url = self.origin_node = None
            self.done.set()

    # ---- the lease ----

    async def _lease_loop(self) -> None:
        ttl = self.settings.lease_ttl
        failures = 0
        while True:
            try:
                if self.role == "origin":
                    if await self.lease.renew():
                        self._renewed_at = time.monotonic()
                    else:
                        self._end("another node took the origin's lease")
                        return
                else:
                    await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures % 20 == 1:  # the first, then every twentieth while NATS stays away
                    log.warning("cluster lease: %s (%d time(s))", exc, failures)
            else:
                failures = 0
            if self.role == "origin" and time.monotonic() - self._renewed_at > ttl:
                self._end(f"could not renew the origin's lease for {ttl:g} s")
                return
            await asyncio.sleep(ttl / 3 if self.role == "origin" else min(ttl / 4, 0.5))

    async def _watch(self) -> None:
        holder = await self.lease.holder()
        if holder is not None and holder.revision != self._seen_revision:
            if holder.node != self.origin_node:
                self.survivor.lease_changes_total += 1
            self._seen_revision = holder.revision
        if holder is not None and holder.node != self.name:
            self.origin_url, self.origin_node = holder.url, holder.node
            return
        self.origin_url = self.origin_node = None
        if not self.applier.running:
            return
        _first, last = await self.cluster.stream_state()
        if self.app.log.last_seq < last:
            return  # not caught up: a replica that has not applied the whole stream never takes the lease
        if await self.lease.take(over=holder):
            await self._promote()

    async def _promote(self) -> None:
        await self.applier.stop()
        _first, last = await self.cluster.stream_state()
        if self.app.log.last_seq < last:  # more arrived between the check and the lease: give it back
            await self.lease.release()
            await self.applier.start()
            return
        self.gate.set_hold(self.settings.replication_ack == "cluster", last)
        self.publisher = Publisher(self.cluster, self.app.log, self.gate.acked, self._end,
                                   term=str(self.lease.revision), ack_timeout=2.0)
        await self.publisher.start(last)
        self._renewed_at = time.monotonic()
        self.role = "origin"
        self.origin_url, self.origin_node = self.url, self.name
        self.survivor.lease_changes_total += 1
        log.warning("cluster: this node (%s) is the origin now; writes go on from seq %d", self.name, last + 1)

    # ---- what this node says of itself ----

    def status(self) -> dict:
        log_ = self.app.log
        if self.role == "origin":
            publisher = self.publisher
            lag_records = log_.last_seq - (publisher.acked_seq if publisher else log_.last_seq)
            lag_s = 0.0
        else:
            lag_records = max(0, self.applier.stream_last - log_.last_seq)
            lag_s = self.applier.lag_seconds()
        return {"node": self.name, "url": self.url, "role": self.role, "applied_seq": self.app.durable_seq(),
                "last_seq": log_.last_seq, "lag_records": lag_records, "lag_s": round(lag_s, 3),
                "origin": self.origin_url, "at": time.time()}

    def health(self) -> dict:
        s = self.status()
        return {"role": s["role"], "applied_seq": s["applied_seq"], "lag_records": s["lag_records"],
                "lag_s": s["lag_s"], "node": self.name, "origin": s["origin"]}

    async def _registry_loop(self) -> None:
        while True:
            try:
                if self.role == "replica":
                    _first, last = await self.cluster.stream_state()
                    self.applier.stream_last = max(self.applier.stream_last, last)
                await self.cluster.nodes_kv.put(self.name, json.dumps(self.status()).encode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("cluster registry: %s", exc)
            await asyncio.sleep(REGISTRY_INTERVAL)

    def _metrics(self) -> None:
        m = self.app.metrics
        m.gauge("homestream_cluster_is_origin", "1 on the cluster's origin, 0 on a replica",
                lambda: 1 if self.role == "origin" else 0)
        m.gauge("homestream_replication_lag_records",
                "replica: stream records not applied yet; origin: records JetStream has not acknowledged",
                lambda: self.status()["lag_records"])
        m.gauge("homestream_replication_lag_seconds", "replica: age of the newest applied record while behind",
                lambda: self.status()["lag_s"])
        m.gauge("homestream_replication_applied_total", "records a replica applied from the stream",
                lambda: self.applier.applied_total)
        m.gauge("homestream_replication_held_records", "records committed here waiting for JetStream's ack",
                lambda: self.gate.held)
        m.gauge("homestream_replication_publish_failures_total", "publishes JetStream refused or left unanswered",
                lambda: self.publisher.publish_failures_total if self.publisher else 0)
        m.gauge("homestream_cluster_lease_changes_total", "times this process saw the origin's lease change hands",
                lambda: self.survivor.lease_changes_total)
        m.gauge("homestream_cluster_rebuilds_total", "times this node stepped down and rebuilt itself as a replica",
                lambda: self.survivor.rebuilds_total)
        m.gauge("homestream_cluster_records_dropped_total",
                "local records dropped at a rejoin because the stream never took them",
                lambda: self.survivor.records_dropped_total)
