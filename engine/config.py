"""Every setting of the server in one dataclass, with its unit, default and why.

Settings come, lowest precedence first, from these defaults, a TOML file (`--config FILE`), `HOMESTREAM_<FIELD>`
environment variables (upper-case field name), and command-line flags. docs/OPERATIONS.md documents each field;
`Settings.describe()` is its source so the two cannot drift. Invariant: a loaded Settings is validated, so nothing
downstream re-checks ranges.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

FSYNC_MODES = ("always", "batch", "never")


def _f(default: Any, doc: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc, **kw})
    return field(default=default, metadata={"doc": doc, **kw})


@dataclass
class Settings:
    data: str = _f("./homestream-data", "directory of the log segments and checkpoints; created if missing")
    host: str = _f("127.0.0.1", "address to listen on; loopback by default so a first start exposes nothing")
    port: int = _f(6286, "TCP port")
    fsync: str = _f("batch", "durability: always (fsync per write), batch (group commit), never (OS decides)")
    commit_window_ms: float = _f(2.0, "batch mode: the longest a write waits for the group fsync that covers it (ms)")
    segment_bytes: int = _f(64 * MiB, "size of one log segment file before it is sealed and a new one started (bytes)")
    open_writes: bool = _f(False, "accept unsigned writes: for local benchmarks only, announced loudly at start")
    max_body_bytes: int = _f(8 * MiB, "largest request body (bytes); larger is 413 before the body is read")
    max_header_bytes: int = _f(16 * KiB, "largest request head (bytes); larger is 431")
    max_request_line: int = _f(8 * KiB, "longest request line (bytes); longer is 414")
    idle_timeout: float = _f(30.0, "close a keep-alive connection idle this long between requests (s)")
    header_timeout: float = _f(10.0, "close a connection whose request head takes longer than this (s)")
    max_connections: int = _f(20000, "connections beyond this are answered 503 and closed")
    body_budget_bytes: int = _f(64 * MiB, "request-body bytes all connections may hold at once; a body past it is "
                                "503 with Retry-After (a Content-Length body counts whole from its head; bodies "
                                "of at most 64 KiB may go 1/8 past it)")
    body_min_rate: int = _f(4 * KiB, "a request body must arrive at this mean rate after a grace of header_timeout: "
                            "each byte adds 1/rate s to its deadline; slower is 408 (bytes/s)")
    body_timeout: float = _f(120.0, "the longest a request body may take after its head, whatever its rate (s)")
    send_timeout: float = _f(60.0, "abort a connection whose peer reads none of its queued output this long (s)")
    cors_origins: list = _f([], "origins echoed in Access-Control-Allow-Origin; empty means '*'")
    auth_skew: float = _f(300.0, "largest accepted clock difference of a signed request (s)")
    verify_threads: int = _f(1, "threads that check ed25519 signatures beside the event loop; 0 checks on the loop")
    read_cache_bytes: int = _f(64 * MiB, "memory for whole answers to hot GETs of public keys (bytes); 0 disables")
    sse_keepalive: float = _f(15.0, "send ': keep-alive' on a stream after this long without a frame (s)")
    inline_max: int = _f(4 * KiB, "largest UTF-8 body carried inline in a PUT event with ?inline=1 (bytes)")
    send_queue_bytes: int = _f(1 * MiB, "per-subscriber send queue; past it the subscriber catches up from the log")
    max_lag_bytes: int = _f(1 * GiB, "a subscriber further behind than this much log is evicted (bytes)")
    retention_age: float = _f(0.0, "drop history older than this (s); 0 keeps it forever; live keys are kept")
    retention_bytes: int = _f(0, "drop oldest history past this total log size (bytes); 0 is unlimited")
    retention_interval: float = _f(30.0, "how often retention runs when retention_age or retention_bytes is set (s)")
    checkpoint_interval: float = _f(300.0, "how often to write the key-index checkpoint that makes restarts fast (s); 0 never")
    checkpoint_min_records: int = _f(10000, "skip a periodic checkpoint when fewer records came since the last one")
    backup_dir: str = _f("", "folder of periodic backups (one sub-folder per backup); empty disables them")
    backup_interval: float = _f(0.0, "how often to take a backup into backup_dir while serving (s); 0 never")
    backup_keep: int = _f(3, "how many finished backups to keep in backup_dir (older ones are removed)")
    max_patterns: int = _f(64, "most patterns in one /subscribe request")
    shutdown_timeout: float = _f(10.0, "on SIGTERM, the longest to wait for in-flight work before exiting (s)")
    log_level: str = _f("info", "debug, info, warning or error")
    # cluster (docs/CLUSTER.md): the log replicated through NATS JetStream
    cluster: list = _f([], "NATS server URLs of the cluster to join; empty runs a standalone node")
    node: str = _f("", "this node's name in the cluster (unique); default: the host name and port")
    advertise_url: str = _f("", "the URL other nodes and clients reach this node at; default http://host:port")
    replication_ack: str = _f("cluster", "cluster: acknowledge a write once JetStream has it; local: once on disk here")
    min_seq_wait: float = _f(2.0, "longest a request with a Min-Seq header waits for that seq to be applied (s)")
    cluster_name: str = _f("homestream", "name of the JetStream stream and key-value buckets of this cluster")
    cluster_replicas: int = _f(3, "copies JetStream keeps of the stream and the lease (NATS servers, 1..5)")
    lease_ttl: float = _f(5.0, "the origin's lease lapses this long after its last renewal; then a replica takes over (s)")
    stream_max_age: float = _f(0.0, "JetStream drops stream records older than this (s); 0 keeps them all")
    # ---- a public server (SPEC 5.2): signups, quotas, rate limits, admin API (engine/policy, engine/admin) ----
    signup: str = _f("open", "who may write: open (anyone signed), token (after POST /signup?token=), closed")
    user_quota_bytes: int = _f(0, "most live bytes (sum of current value sizes) per user; past it 507; 0 is off")
    rate_user_writes: float = _f(0.0, "writes per second per user (token bucket, burst the same); past it 429; 0 is off")
    rate_ip_requests: float = _f(0.0, "requests per second per client address (burst the same); past it 429; 0 is off")
    rate_ip_streams: int = _f(0, "most open event streams per client address; past it 429; 0 is off")
    trusted_proxies: list = _f([], "CIDR ranges of reverse proxies whose X-Forwarded-For names the client address")
    admin_secret_file: str = _f("", "file holding the admin API's bearer secret; empty: /admin/ is 404")
    # request cost bounded by the server's data (issue 21: seed API, /sync, history endpoints)
    seed_max_storages: int = _f(64, "most distinct storage entries in one /get (an exact repeat counts once); "
                                "more is 400")
    seed_max_filters: int = _f(64, "most bloomFilters one /get carries; more is 400")
    seed_max_hashes: int = _f(10000, "most content hashes one /get lists, in all its storages; more is 400")
    bloom_max_count: int = _f(1_000_000, "largest /bloom count a client may claim past the storage's own item count; "
                              "more is 400 (the filter for 1M items is 1.2 MB)")
    sync_max_symbols: int = _f(1_000_000, "most coded symbols one /sync decodes with, and a collection's sketch holds "
                               "(24 bytes each); below that the budget is 2 x the server's item count + 256")
    sync_session_bytes: int = _f(32 * MiB, "memory for the symbols /sync sessions keep between rounds, all "
                                 "sessions together (bytes); the oldest sessions are dropped past it")
    history_scan_records: int = _f(100_000, "most log records one /events/ page or one reverse /events-stream "
                                   "examines; past it the answer stops early, with a cursor to go on from")
    # serve --workers N (engine/workers/): one writer process, N worker processes over the shared segments
    workers: str = _f("1", "worker processes: a whole number or 'auto' (usable cores); 1 is one process, as before")
    workers_reuse_port: bool = _f(False, "each worker binds its own SO_REUSEPORT socket instead of sharing one")
    # ---- homestream relay (engine/relay/, SPEC 5.4); `serve` ignores these ----
    upstream: list = _f([], "relay: upstreams to follow, NAME=URL (repeat the flag); TOML: [[upstream]] tables "
                        "with name, url and optional kind = homestream|pubky (default: detected)", relay=True)
    poll_interval: float = _f(1.0, "relay: how often a pubky upstream's /events/ feed is polled once caught up (s)",
                              relay=True)
    upstream_retry_max: float = _f(30.0, "relay: longest back-off between reconnects to an upstream (s)",
                                   relay=True)

    def validate(self) -> "Settings":
        if self.fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_MODES)}, not {self.fsync!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, not {self.port}")
        for name in ("segment_bytes", "max_body_bytes", "max_header_bytes", "max_request_line",
                     "max_connections", "inline_max", "send_queue_bytes", "max_lag_bytes", "max_patterns",
                     "body_min_rate",
                     "seed_max_storages", "seed_max_filters", "seed_max_hashes", "bloom_max_count",
                     "sync_max_symbols", "sync_session_bytes", "history_scan_records"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.segment_bytes < 64 * KiB:
            raise ValueError("segment_bytes must be at least 64 KiB")
        for name in ("commit_window_ms", "idle_timeout", "header_timeout", "auth_skew", "sse_keepalive",
                     "shutdown_timeout", "retention_interval", "body_timeout", "send_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.body_budget_bytes < self.max_body_bytes:
            raise ValueError("body_budget_bytes must be at least max_body_bytes (or no largest body could be read)")
        if not 0 <= self.verify_threads <= 64:
            raise ValueError(f"verify_threads must be 0..64, not {self.verify_threads}")
        if self.read_cache_bytes < 0:
            raise ValueError("read_cache_bytes must not be negative")
        if self.retention_age < 0 or self.retention_bytes < 0:
            raise ValueError("retention settings must not be negative")
        if self.replication_ack not in ("cluster", "local"):
            raise ValueError(f"replication_ack must be cluster or local, not {self.replication_ack!r}")
        if self.min_seq_wait < 0 or self.lease_ttl <= 0 or self.stream_max_age < 0:
            raise ValueError("min_seq_wait and stream_max_age must not be negative, lease_ttl must be positive")
        if self.cluster and self.workers != "1":
            raise ValueError("--workers with --cluster is not built yet: a cluster node runs one process")
        if not 1 <= self.cluster_replicas <= 5:
            raise ValueError(f"cluster_replicas must be 1..5, not {self.cluster_replicas}")
        if not self.cluster_name.replace("-", "").replace("_", "").isalnum() or not self.cluster_name.isascii():
            raise ValueError(f"cluster_name may hold only letters, digits, '-' and '_', not {self.cluster_name!r}")
        if self.workers != "auto" and not (self.workers.isascii() and self.workers.isdigit()
                                           and 1 <= int(self.workers) <= 1024):
            raise ValueError(f"workers must be 1..1024 or auto, not {self.workers!r}")
        if self.checkpoint_interval < 0 or self.checkpoint_min_records < 0 or self.backup_interval < 0:
            raise ValueError("checkpoint and backup settings must not be negative")
        if self.backup_keep < 1:
            raise ValueError("backup_keep must be at least 1")
        if self.backup_interval and not self.backup_dir:
            raise ValueError("backup_interval needs backup_dir")
        if self.signup not in ("open", "token", "closed"):
            raise ValueError(f"signup must be open, token or closed, not {self.signup!r}")
        for name in ("user_quota_bytes", "rate_user_writes", "rate_ip_requests", "rate_ip_streams"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative (0 turns it off)")
        from .policy.clientaddr import parse_networks

        parse_networks(self.trusted_proxies)  # ValueError naming a bad range
        if self.admin_secret_file:
            try:
                secret = Path(self.admin_secret_file).read_bytes().strip()
            except OSError as exc:
                raise ValueError(f"admin_secret_file: cannot read {self.admin_secret_file}: {exc.strerror}") from None
            if not secret:
                raise ValueError(f"admin_secret_file {self.admin_secret_file} is empty "
                                 "(make a secret with: openssl rand -hex 32)")
        if self.poll_interval <= 0 or self.upstream_retry_max <= 0:
            raise ValueError("poll_interval and upstream_retry_max must be positive")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError(f"log_level must be debug, info, warning or error, not {self.log_level!r}")
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data)

    @classmethod
    def relay_only(cls) -> frozenset[str]:
        """Fields only `homestream relay` reads (left out of `serve`'s flags)."""
        return frozenset(f.name for f in fields(cls) if f.metadata.get("relay"))

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str]]:
        """(name, default, doc) for every field, for --help and docs/OPERATIONS.md."""
        out = []
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append((f.name, default, f.metadata["doc"]))
        return out

    @classmethod
    def load(cls, config_file: str | None = None, env: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> "Settings":
        values: dict[str, Any] = {}
        if config_file:
            with open(config_file, "rb") as fh:
                doc = tomllib.load(fh)
            doc = doc.get("homestream", doc)
            for key, value in doc.items():
                values[_field_name(key, f"{config_file}")] = value
        env = os.environ if env is None else env
        for f in fields(cls):
            raw = env.get("HOMESTREAM_" + f.name.upper())
            if raw is not None:
                values[f.name] = _from_text(f, raw)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[_field_name(key, "overrides")] = value
        types = {f.name: f for f in fields(cls)}
        for key, value in list(values.items()):
            values[key] = _coerce(types[key], value)
        return cls(**values).validate()


def _field_name(key: str, where: str) -> str:
    name = key.replace("-", "_")
    if name not in {f.name for f in fields(Settings)}:
        raise ValueError(f"unknown setting {key!r} in {where}")
    return name


def _from_text(f: dataclasses.Field, raw: str) -> Any:
    if f.type in ("list", list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    kind = f.type
    try:
        if kind in ("bool", bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind in ("int", int):
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind in ("float", float):
            return float(value)
        if kind in ("list", list):
            if isinstance(value, str):
                return [part.strip() for part in value.split(",") if part.strip()]
            return list(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"setting {f.name}: cannot read {value!r} as {kind}") from None
