"""`homestream sync <storage> <dir>`: reconcile a local folder of item files with an append-only storage.

Every regular file directly in the folder (not starting with '.') is an item, whatever its name; subfolders are
not synced, and a symbolic link is followed only when it points at a regular file inside the folder (any other
link is skipped with a warning, so nothing outside the folder is ever uploaded). Items received are written as
`<item name>` (z-base-32 of the BLAKE3 digest of their bytes), with the mode the umask gives a new file. Items
the server lacks are uploaded with a signed `POST /<user><dir>/` (needs the owner's key). The server's count is
kept in `.homestream-sync.json` in the folder and used as the sizing hint next time.
Invariants: a received file is written to a temporary name and renamed, so the folder never holds a partial
item; a folder that cannot be written is refused before anything is sent; progress goes to stderr (redrawn in
place only on a terminal), one result line to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from ..client.cli_common import UsageError, add_client_options, key_path, make_client, report
from ..client.errors import LocalFileError
from ..client.progress import Progress
from ..names import item_name

STATE_FILE = ".homestream-sync.json"

EXAMPLES = """
Each file directly in DIR is one item of the storage. The server names items by the hash of their content, so
files received are stored as <item name> (52 characters of z-base-32 of the BLAKE3 digest), not under the
names they had where they were made; files starting with '.' are ignored, subfolders are skipped, and symbolic
links are followed only to files inside DIR.

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


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def read_folder(folder: Path) -> tuple[list[bytes], list[str], int]:
    """(item bytes, names of links skipped, subfolders skipped) of the files directly in `folder`."""
    items, skipped_links, subfolders = [], [], 0
    root = os.path.realpath(folder)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not target.startswith(root + os.sep) or not os.path.isfile(target):
                skipped_links.append(entry.name)
                continue
            path = target
        elif entry.is_dir(follow_symlinks=False):
            subfolders += 1
            continue
        elif not entry.is_file(follow_symlinks=False):
            continue  # sockets, fifos, devices: not items
        else:
            path = entry.path
        try:
            items.append(Path(path).read_bytes())
        except OSError as exc:
            raise LocalFileError(f"{entry.path}: cannot read: {exc.strerror or exc}") from None
    return items, skipped_links, subfolders


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_item(folder: Path, data: bytes, mode: int) -> None:
    name = item_name(data)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600; a received item gets what any new file gets
            f.write(data)
        os.replace(tmp, folder / name)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise LocalFileError(f"{folder / name}: cannot write: {exc.strerror or exc}") from None


def prepare_folder(folder: Path) -> None:
    """Create the folder if missing and check that files can be made in it; LocalFileError saying why not."""
    if folder.exists() and not folder.is_dir():
        raise LocalFileError(f"{folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LocalFileError(f"{folder}: cannot write files there: {exc.strerror or exc}; "
                             f"pass a folder you can write") from None


def run(args: argparse.Namespace) -> int:
    return report("sync", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from ..client.errors import NotFoundError
    from ..client.sync import reconcile

    progress = Progress("homestream sync", quiet=args.quiet)
    client = make_client(args)
    try:
        user, dir_path = client.resolve(args.storage, directory=True)
        if not dir_path.endswith("/") or dir_path == "/":
            raise UsageError(f"{args.storage!r} is not a storage (<user><dir>/)")
        storage = f"{user}{dir_path}"
        folder = Path(args.dir)
        prepare_folder(folder)
        state_path = folder / STATE_FILE
        hint = None
        try:
            state = json.loads(state_path.read_text())
            if state.get("storage") == storage and isinstance(state.get("count"), int):
                hint = state["count"]
        except (OSError, ValueError, AttributeError):
            pass
        have, links, subfolders = read_folder(folder)
        if links:
            shown = ", ".join(links[:5]) + (", ..." if len(links) > 5 else "")
            progress.note(f"warning: skipped {plural(len(links), 'symbolic link')} (not followed: "
                          f"{'it points' if len(links) == 1 else 'they point'} outside {folder} or not at a file): "
                          f"{shown}")
        if subfolders:
            progress.note(f"note: skipped {plural(subfolders, 'subfolder')} of {folder} (sync takes the files "
                          f"directly in the folder)")
        progress.step(f"{storage}: {plural(len(have), 'local item')}, reconciling…")
        key = key_path(args)
        private = not dir_path.startswith("/pub/")
        new_storage = False
        try:
            result = reconcile(client.url, storage, have, server_count=hint, key=key if private else None)
            received, extra, count, requests = result.items, result.extra, result.count, result.requests
            sent = result.bytes_sent
        except NotFoundError:  # the storage does not exist on the server yet: everything local is extra
            received, extra, count, requests, sent = [], list({item_name(h): h for h in have}.values()), 0, 1, None
            new_storage = True
        mode = _file_mode()
        for i, data in enumerate(received, 1):
            write_item(folder, data, mode)
            if i % 100 == 0 or i == len(received):
                progress.step(f"{storage}: received {i:,}/{len(received):,}")
        uploaded = uploaded_bytes = 0
        if extra and not args.no_upload:
            if client.user != user:
                progress.note(f"{storage}: {plural(len(extra), 'local item')} the server lacks "
                              f"{'is' if len(extra) == 1 else 'are'} not uploaded (that needs {user}'s key)")
            else:
                for data in extra:
                    client.post(f"{user}{dir_path}", data)
                    uploaded += 1
                    uploaded_bytes += len(data)
                    if uploaded % 20 == 0 or uploaded == len(extra):
                        progress.step(f"{storage}: uploaded {uploaded:,}/{len(extra):,}")
                count += uploaded
        try:
            state_path.write_text(json.dumps({"storage": storage, "count": count}))
        except OSError:
            pass
        how = ("the storage was new on the server" if new_storage else
               f"{plural(requests, 'sync request')}, {plural(sent, 'byte')} sent")
        progress.note(f"{storage}: {plural(len(received), 'item')} received, {plural(uploaded, 'item')} uploaded "
                      f"({plural(uploaded_bytes, 'byte')}), the server has {plural(count, 'item')} ({how})")
        print(f"received {len(received)} uploaded {uploaded} count {count}")
        return 0
    finally:
        client.close()
