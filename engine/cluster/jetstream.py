"""The NATS side of a cluster: the connection, the stream that carries the log, and the key-value buckets (the
origin's lease, the node registry `homestream cluster status` reads, the secret that opens snapshots).

Names, from `--cluster-name` (default homestream): stream `<name>` on subject `<name>.log`, buckets `<name>-lease`,
`<name>-nodes` and `<name>-secret`. One stream message is one log record's framed bytes, so the stream's seq is
homestream's seq. Invariants: setup is idempotent (every node runs it at start); nothing else here changes the
stream; nats-py is imported here (and only by engine/cluster), so a standalone server never needs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("homestream.cluster")

RECORD_HEADROOM = 4096  # a record is its value plus at most this much (header, path, content type)


@dataclass(frozen=True)
class Names:
    cluster: str

    @property
    def stream(self) -> str:
        return self.cluster

    @property
    def subject(self) -> str:
        return f"{self.cluster}.log"

    @property
    def lease_bucket(self) -> str:
        return f"{self.cluster}-lease"

    @property
    def nodes_bucket(self) -> str:
        return f"{self.cluster}-nodes"

    @property
    def secret_bucket(self) -> str:
        return f"{self.cluster}-secret"


def import_nats() -> Any:
    try:
        import nats
    except ImportError:
        raise RuntimeError("clustering needs nats-py: pip install 'homestream[cluster]' (or nats-py)") from None
    return nats


async def connect(urls: list[str], name: str, *, patient: bool = True) -> Any:
    """A NATS connection. Patient (a server node): it tries, and later reconnects, for ever, logging what happens
    (a NATS server restart is routine). Impatient (a command): two tries per server, then the error."""
    nats = import_nats()

    async def on_error(exc: Exception) -> None:
        if patient:
            log.warning("NATS: %s", exc)

    async def on_disconnect() -> None:
        log.warning("NATS: disconnected")

    async def on_reconnect() -> None:
        log.info("NATS: reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    nc = await nats.connect(urls, name=name, connect_timeout=2, max_reconnect_attempts=-1 if patient else 1,
                            reconnect_time_wait=0.5,
                            allow_reconnect=True, error_cb=on_error, disconnected_cb=on_disconnect,
                            reconnected_cb=on_reconnect)
    return nc


async def patiently(what: str, call, attempts: int = 40, pause: float = 0.25):
    """`await call()`, again after a pause while JetStream is still electing a leader for something just made
    (or moved): at start, and after a NATS server restart, that takes a moment."""
    for attempt in range(attempts):
        try:
            return await call()
        except Exception as exc:
            if attempt == attempts - 1 or type(exc).__name__ not in _TRANSIENT:
                raise
            log.info("%s: %s; retrying", what, exc)
            await asyncio.sleep(pause)


_TRANSIENT = frozenset(("NoStreamResponseError", "TimeoutError", "ServiceUnavailableError", "NoRespondersError",
                        "ServerError"))


class Cluster:
    """The connection and the JetStream objects one node uses."""

    def __init__(self, nc: Any, names: Names):
        self.nc = nc
        self.js = nc.jetstream(timeout=5)
        self.names = names
        self.lease_kv: Any = None
        self.nodes_kv: Any = None
        self.secret = ""

    async def setup(self, *, replicas: int, lease_ttl: float, max_age: float, max_record: int) -> None:
        from nats.js import api
        from nats.js.errors import BadRequestError

        if self.nc.max_payload < max_record:
            raise RuntimeError(f"the NATS servers accept messages of at most {self.nc.max_payload} bytes, but a "
                               f"record can be {max_record}: set max_payload (for example 9MB) in the "
                               f"nats-server config, or lower --max-body-bytes")
        config = api.StreamConfig(name=self.names.stream, subjects=[self.names.subject], num_replicas=replicas,
                                  storage=api.StorageType.FILE, retention=api.RetentionPolicy.LIMITS,
                                  discard=api.DiscardPolicy.OLD, max_age=max_age or None,
                                  max_msg_size=max_record,
                                  duplicate_window=min(120.0, max_age) if max_age else 120.0)
        try:
            await self.js.add_stream(config)
        except BadRequestError:  # it exists with other settings: bring them in line
            await self.js.update_stream(config)
        self.lease_kv = await self._bucket(self.names.lease_bucket, lease_ttl, replicas)
        self.nodes_kv = await self._bucket(self.names.nodes_bucket, max(10.0, 4 * lease_ttl), replicas)
        self.secret = await self._secret(replicas)

    async def _secret(self, replicas: int) -> str:
        """The cluster's shared secret (made by the first node, kept in `<name>-secret`): what a node shows to
        fetch another's snapshot. Whoever can read the NATS buckets is trusted; an HTTP client is not."""
        import secrets

        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        kv = await self._bucket(self.names.secret_bucket, 0, replicas)

        async def make() -> str:
            try:
                await kv.create("snapshot", secrets.token_hex(32).encode())
            except KeyWrongLastSequenceError:
                pass
            try:
                return (await kv.get("snapshot")).value.decode()
            except KeyNotFoundError:
                raise RuntimeError("the cluster's secret bucket lost its key") from None

        return await patiently("cluster secret", make)

    async def _bucket(self, bucket: str, ttl: float, replicas: int) -> Any:
        from nats.js.errors import BadRequestError, BucketNotFoundError

        try:
            return await self.js.key_value(bucket)
        except BucketNotFoundError:
            pass
        try:
            return await self.js.create_key_value(bucket=bucket, ttl=ttl or None, history=1, replicas=replicas)
        except BadRequestError:  # another node created it meanwhile
            return await self.js.key_value(bucket)

    async def stream_state(self) -> tuple[int, int]:
        """(first seq, last seq) of the stream; (0, 0) or (n, n - 1) when it holds nothing."""
        info = await self.js.stream_info(self.names.stream)
        return info.state.first_seq, info.state.last_seq

    async def record(self, seq: int) -> bytes | None:
        """The stream's message at `seq` (a record's bytes), None if the stream no longer or never held it."""
        from nats.js.errors import NotFoundError

        try:
            msg = await self.js.get_msg(self.names.stream, seq)
        except NotFoundError:
            return None
        return msg.data

    async def nodes(self) -> list[dict]:
        """The node registry: what each live node said of itself last (role, applied seq, URL)."""
        from nats.js.errors import NoKeysError

        try:
            keys = await self.nodes_kv.keys()
        except NoKeysError:
            return []
        out = []
        for key in keys:
            try:
                entry = await self.nodes_kv.get(key)
            except Exception:
                continue
            if entry.value:
                out.append(json.loads(entry.value))
        return out

    async def close(self) -> None:
        try:
            await self.nc.close()
        except Exception:
            pass
