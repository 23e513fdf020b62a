"""The application: the state every handler shares (settings, log, keyspace, hub, auth, metrics) and dispatch.

`handle(request)` routes, calls one handler, and turns every exception into a response — ClientError into its
status and JSON body, StorageError into 507, anything else into 500 with the traceback logged. It is synchronous,
except that a signed request may first wait for its signature check on the verifier threads (a Deferred, see
engine/http/offload.py). Invariant: no exception escapes `handle`, so a bad request can never take the server
down.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .admin import api as admin_api
from .api import ops, signup, storage
from .api.read_cache import ReadCache
from .api.writes import LocalWrites
from .config import Settings
from .errors import ClientError, LogFull, StorageError
from .http import router
from .http.auth import Authenticator
from .http.message import (Request, Response, StreamResponse, cors_headers, cors_lines, error_response,
                           from_client_error)
from .metrics import Metrics
from .policy import Policy
from .policy.users import UserTable

log = logging.getLogger("homestream.app")

Handler = Callable[["App", Request, str], "Response | StreamResponse"]


class App:
    def __init__(self, settings: Settings, log_: Any, keyspace: Any, metrics: Metrics | None = None):
        self.settings = settings
        self.log = log_
        self.keyspace = keyspace
        self.metrics = metrics or Metrics()
        self.auth = Authenticator(settings.auth_skew, settings.open_writes)
        self._origins = frozenset(o.encode("latin-1") for o in settings.cors_origins)
        self.handlers: dict[str, Handler] = {
            "preflight": ops.preflight,
            "healthz": ops.healthz,
            "metrics": ops.metrics,
            "storage_get": storage.storage_get,
            "storage_put": storage.storage_put,
            "storage_delete": storage.storage_delete,
            "storage_post": storage.storage_post,
            "signup": signup.signup,
            "admin": admin_api.admin,
        }
        self.hub: Any = None
        self.route = router.route  # (method, path) -> Route; a relay serves another set of endpoints
        # services started after the listener and stopped first at shutdown (start(loop), async stop()):
        # the relay's upstream followers
        self.services: list[Any] = []
        self.apply_retention: Callable[..., dict] | None = (
            keyspace.apply_retention if keyspace is not None else None)
        self.offload: Any = None  # engine.http.offload.SignatureOffload, set by the server when it runs one
        self.extensions: dict[str, Any] = {}
        self.read_cache: ReadCache | None = None  # framed answers to hot public GETs; None when disabled
        self.writes: Any = LocalWrites(keyspace)  # where writes are applied (a worker forwards them to the writer)
        self.fresh: Callable[[], None] | None = None  # a follower's catch-up, run before each request (workers)
        self._install_policy(settings, keyspace)
        if settings.read_cache_bytes > 0 and keyspace is not None:
            cache = self.read_cache = ReadCache(settings.read_cache_bytes, keyspace.location)
            m = self.metrics
            m.gauge("homestream_read_cache_hits_total", "GETs answered from the read cache", lambda: cache.hits)
            m.gauge("homestream_read_cache_misses_total", "plain GETs the read cache could not answer",
                    lambda: cache.misses)
            m.gauge("homestream_read_cache_stale_total", "read cache misses because the key had changed",
                    lambda: cache.stale)
            m.gauge("homestream_read_cache_evictions_total", "read cache entries dropped for space",
                    lambda: cache.evicted)
            m.gauge("homestream_read_cache_bytes", "bytes of framed answers held by the read cache",
                    lambda: cache.bytes)
            m.gauge("homestream_read_cache_entries", "answers held by the read cache", lambda: len(cache))

    def _install_policy(self, settings: Settings, keyspace: Any) -> None:
        """SPEC 5.2: signups, quotas, rate limits (engine/policy) and the admin API's secret (engine/admin)."""
        table = UserTable.open(settings.data) if keyspace is not None else UserTable(settings.data)
        if table.dropped_bytes:
            log.warning("%s: dropped a torn tail of %d bytes", table.path, table.dropped_bytes)
        policy = self.policy = Policy(settings, keyspace, table)
        self.auth.write_gate = policy.admit_write
        if keyspace is not None and policy.quota is not None:
            keyspace.put_guard = policy.quota
        # the read cache answers before any Request exists: it charges the client's request bucket itself
        self.fast_admit = policy.fast_admit if policy.ip_requests is not None else None
        self.admin_secret = admin_api.load_secret(settings.admin_secret_file) if settings.admin_secret_file else None
        m = self.metrics
        for reason in policy.refused:
            m.gauge(f"homestream_policy_{reason}_total", f"requests refused {reason.replace('_', ' ')} (SPEC 5.2)",
                    lambda reason=reason: policy.refused[reason])

    def add_handlers(self, handlers: dict[str, Handler]) -> None:
        self.handlers.update(handlers)

    def durable_seq(self) -> int:
        return self.log.durable_seq

    def cors(self, request: Request) -> list[tuple[bytes, bytes]]:
        return cors_headers(request.headers.get(b"origin"), self._origins)

    def cors_lines(self, request: Request) -> bytes:
        """The same headers as `cors`, encoded (cached): what the connection splices into every response."""
        return cors_lines(request.headers.get(b"origin"), self._origins)

    def cors_for_error(self) -> list[tuple[bytes, bytes]]:
        return cors_headers(None, self._origins)

    def handle(self, request: Request, target_error: ClientError | None = None) -> "Response | StreamResponse | Any":
        """The response, or a Deferred (engine/http/offload.py) when the request's signature is being checked
        beside the loop; the Deferred then delivers the response of `_dispatch`."""
        if target_error is None and self.offload is not None:
            deferred = self.offload.submit(request)
            if deferred is not None:
                return deferred
        return self._dispatch(request, target_error)

    def _dispatch(self, request: Request, target_error: ClientError | None = None) -> Response | StreamResponse:
        response = self._run(request, target_error)
        # a refused request leaves its signature unused (auth.py); a handler that answers later (a Deferred, as
        # the admin API's batched deletes) has accepted its request
        self.auth.settle(getattr(response, "status", 200) < 300)
        return response

    def _run(self, request: Request, target_error: ClientError | None = None) -> Response | StreamResponse:
        policy = self.policy
        try:
            if target_error is not None:
                raise target_error
            route = self.route(request.method, request.path)
            handler = self.handlers.get(route.handler)
            if handler is None:
                return error_response(501, "not_implemented", f"{route.handler} is not available in this build")
            if not policy.watching or route.handler == "admin":
                return handler(self, request, route.param)
            policy.begin(request)  # SPEC 5.2: per-address limits, answered in SPEC order (engine/policy/gate.py)
            return policy.finish(request, handler(self, request, route.param), StreamResponse)
        except ClientError as exc:
            return from_client_error(policy.settle(exc))
        except LogFull as exc:
            log.error("write refused: %s", exc)
            return error_response(507, "insufficient_storage", str(exc))
        except StorageError as exc:
            log.error("storage error on %s %s: %s", request.method, request.path, exc)
            return error_response(500, "storage_error", "the server could not read or write its log")
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal_error", "internal server error")
        finally:
            policy.pending = None
