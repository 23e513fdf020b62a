"""`homestream sync <storage> <dir>`: reconcile a local folder of item files with an append-only storage.

Every regular file of the folder (not starting with '.') is an item, whatever its name; items received are
written as `<item name>` (z-base-32 of the BLAKE3 digest). Items the server lacks are uploaded with a signed
`POST /<user><dir>/` (needs the owner's key). The server's count is kept in `.homestream-sync.json` in the
folder and used as the sizing hint next time. Invariants: a received file is written to a temporary name and
renamed, so the folder never holds a partial item; progress goes to stderr, one result line to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ..client.cli_common import UsageError, add_client_options, key_path, make_client, report
from ..names import item_name

STATE_FILE = ".homestream-sync.json"

EXAMPLES = """
examples:
  homestream sync /pub/notes/ ./notes --key alice.key        # own storage: download and upload
  homestream sync <user>/pub/feed/ ./feed                     # someone else's: download only
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("storage", help="<user><dir>/, pubky://<user><dir>/, or /<dir>/ of the key's user")
    parser.add_argument("dir", help="local folder of item files (created if missing)")
    parser.add_argument("--no-upload", action="store_true", help="only download what the folder lacks")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_client_options(parser)


def _progress(args, text: str, end: str = "\n") -> None:
    if not args.quiet:
        print(f"\rhomestream sync: {text}\x1b[K", end=end, file=sys.stderr, flush=True)


def _read_folder(folder: Path) -> list[bytes]:
    items = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        items.append(Path(entry.path).read_bytes())
    return items


def _write_item(folder: Path, data: bytes) -> None:
    name = item_name(data)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, folder / name)


def run(args: argparse.Namespace) -> int:
    return report("sync", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from ..client.sync import reconcile

    client = make_client(args)
    try:
        user, dir_path = client.resolve(args.storage, directory=True)
        if not dir_path.endswith("/") or dir_path == "/":
            raise UsageError(f"{args.storage!r} is not a storage (<user><dir>/)")
        storage = f"{user}{dir_path}"
        folder = Path(args.dir)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder} is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        state_path = folder / STATE_FILE
        hint = None
        try:
            state = json.loads(state_path.read_text())
            if state.get("storage") == storage and isinstance(state.get("count"), int):
                hint = state["count"]
        except (OSError, ValueError):
            pass
        have = _read_folder(folder)
        _progress(args, f"{storage}: {len(have)} local items, reconciling…", end="")
        key = key_path(args)
        private = not dir_path.startswith("/pub/")
        from ..client.errors import NotFoundError

        try:
            result = reconcile(client.url, storage, have, server_count=hint,
                               key=key if private else None)
            received, extra, count, requests = result.items, result.extra, result.count, result.requests
            sent = result.bytes_sent
        except NotFoundError:
            received, extra, count, requests, sent = [], list({item_name(h): h for h in have}.values()), 0, 1, 0
        for i, data in enumerate(received, 1):
            _write_item(folder, data)
            if i % 100 == 0 or i == len(received):
                _progress(args, f"{storage}: received {i}/{len(received)}", end="")
        uploaded = 0
        if extra and not args.no_upload:
            if client.user != user:
                _progress(args, f"{storage}: {len(extra)} local items the server lacks are not uploaded "
                                f"(that needs {user}'s key)")
            else:
                for data in extra:
                    client.post(f"{user}{dir_path}", data)
                    uploaded += 1
                    if uploaded % 20 == 0 or uploaded == len(extra):
                        _progress(args, f"{storage}: uploaded {uploaded}/{len(extra)}", end="")
                count += uploaded
        try:
            state_path.write_text(json.dumps({"storage": storage, "count": count}))
        except OSError:
            pass
        _progress(args, f"{storage}: {len(received)} received, {uploaded} uploaded, server has {count} items "
                        f"({requests} sync request{'s' if requests != 1 else ''}, {sent} bytes sent)")
        print(f"received {len(received)} uploaded {uploaded} count {count}")
        return 0
    finally:
        client.close()
