"""Snapshots: how a new (empty) replica gets the records the stream no longer holds, from a live node.

Serving (every cluster node): `GET /cluster/snapshot` lists the node's segment files as they hold every record up
to its released seq (`{"upto", "first_seq", "files": [{"name", "bytes"}]}`), and `GET
/cluster/segment/<name>?bytes=N` answers the first N bytes of one (`409` if retention rewrote it since: the fetcher
starts over). Both need `Authorization: Bearer <the cluster secret>` (from the NATS bucket `<name>-secret`), since
they hand out private records too. Sealed segments never change and the active one is cut at a record boundary, so
the copies are a log as the node had it at `upto` -- compacted history included (retention's output, the origin's
"compacted log").

Fetching (engine/cluster/run.py, before the log is opened): a node whose log is empty while the stream no longer
starts at seq 1 copies the files from a node in the registry, writes meta.json (first_seq, next_seq = upto + 1),
and then opens the log as after any restart (recovery checks every record's CRC) and applies the stream from
upto + 1. Invariant: files are written under temporary names and renamed, so a crash mid-copy leaves no half file that
recovery would take for a log.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, ClientError, NotFound, Unauthorized
from ..http.message import Request, Response, json_response
from ..log import segment as _seg

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("homestream.cluster")


class Conflict(ClientError):
    status = 409
    code = "conflict"


def _require_node(app: "App", request: Request) -> None:
    """Only another node of the cluster (it shows the secret from the NATS bucket) may copy the whole log,
    private records included."""
    node = app.extensions.get("cluster")
    given = request.header(b"authorization") or ""
    if node is None or not hmac.compare_digest(given.encode(), f"Bearer {node.cluster.secret}".encode()):
        raise Unauthorized("a snapshot is for the cluster's nodes: show the cluster secret")


def snapshot_manifest(app: "App", request: Request, param: str) -> Response:
    _require_node(app, request)
    upto = app.durable_seq()
    files = app.log.snapshot_files(upto)
    gaps = (_seg.read_highwater(app.log.directory) or {}).get("gaps") or []  # seq ranges recovery gave up on
    return json_response(200, {"upto": upto, "first_seq": min(app.log.first_seq, upto + 1), "gaps": gaps,
                               "files": [{"name": name, "bytes": n} for name, n in files]})


def snapshot_segment(app: "App", request: Request, param: str) -> Response:
    _require_node(app, request)
    text = request.arg("bytes") or ""
    if not text.isdigit():
        raise BadRequest("bytes= must be a whole number")
    if "/" in param or not param.endswith(".seg"):
        raise NotFound(f"no segment {param!r}")
    try:
        view = app.log.snapshot_bytes(param, int(text))
    except KeyError:
        raise Conflict(f"segment {param} is gone (retention): fetch the snapshot list again") from None
    except ValueError as exc:
        raise Conflict(str(exc)) from None
    return Response(200, [(b"content-type", b"application/octet-stream")], bytes(view))


def install(app: "App") -> None:
    app.add_handlers({"cluster_snapshot": snapshot_manifest, "cluster_segment": snapshot_segment})


def fetch(directory: str, sources: list[str], secret: str, timeout: float = 120.0) -> int:
    """Copy a snapshot from the first source URL that gives a whole one into `directory` (which holds no log);
    return its upto seq. RuntimeError if none could."""
    import httpx

    errors = []
    for url in sources:
        try:
            with httpx.Client(base_url=url, timeout=timeout, headers={"Authorization": f"Bearer {secret}"}) as client:
                manifest = client.get("/cluster/snapshot").raise_for_status().json()
                written = []
                for f in manifest["files"]:
                    name, n = f["name"], int(f["bytes"])
                    if "/" in name or not name.endswith(".seg"):
                        raise RuntimeError(f"bad segment name {name!r}")
                    resp = client.get(f"/cluster/segment/{name}", params={"bytes": str(n)})
                    resp.raise_for_status()
                    if len(resp.content) != n:
                        raise RuntimeError(f"{name}: {len(resp.content)} bytes, not {n}")
                    _seg.write_file_atomic(os.path.join(directory, name), [resp.content], tmp_suffix=".snapshot")
                    written.append(name)
                upto = int(manifest["upto"])
                if manifest.get("gaps"):  # without them the copy's open would take those ranges for lost files
                    _seg.write_highwater(directory, {"gaps": manifest["gaps"]})
                _seg.write_meta(directory, {"first_seq": int(manifest["first_seq"]), "next_seq": upto + 1})
                log.warning("bootstrap: copied %d segment file(s) up to seq %d from %s", len(written), upto, url)
                return upto
        except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
            for name in os.listdir(directory):
                if name.endswith(".seg") or name in ("meta.json", "highwater.json"):
                    _seg.remove(os.path.join(directory, name))
    raise RuntimeError("no node gave a snapshot: " + "; ".join(errors) if errors else "no node to ask")


def needs_snapshot(directory: str) -> bool:
    """True when `directory` holds no log yet."""
    if not os.path.isdir(directory):
        return True
    return not any(name.endswith(".seg") for name in os.listdir(directory))


def sources(nodes: list[dict[str, Any]], me: str, first_seq: int) -> list[str]:
    """Nodes to ask, replicas first (spare the origin), each having applied past the stream's first seq."""
    ok = [n for n in nodes if n.get("node") != me and n.get("url") and n.get("applied_seq", 0) >= first_seq - 1]
    ok.sort(key=lambda n: (n.get("role") == "origin", -n.get("applied_seq", 0)))
    return [n["url"] for n in ok]
