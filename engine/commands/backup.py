"""`homestream backup DEST --data DIR`: a consistent copy of the log in DIR, up to its durable seq.

On a data directory no server has open, it takes the log's lock (like the server), opens the log and writes the
backup (engine/log/backup.py): DEST when complete (with MANIFEST.json), DEST.partial if interrupted. A running
server holds the lock: then the backup is the server's job (`--backup-dir`, `--backup-interval`, `--backup-keep`,
or `kill -USR1 <pid>` for one now), which copies while it serves writes.
Invariants: stdout gets one JSON line (the manifest), stderr one line on error; exit 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os

from ..client.cli_common import EXIT_FAILED, EXIT_OK, fail

EXAMPLES = """
examples:
  homestream backup /backups/hs-2026-12-02 --data /var/lib/homestream      # server stopped
  homestream serve --data /var/lib/homestream --backup-dir /backups --backup-interval 3600 --backup-keep 24
  kill -USR1 $(pidof -s homestream)                                          # one backup now into --backup-dir
  homestream serve --data /backups/hs-2026-12-02 --port 6287                 # a backup opens as a log
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("dest", metavar="DEST", help="the backup directory to create (must not exist)")
    parser.add_argument("--data", metavar="DIR", required=True, help="the server's data directory (its --data)")


def run(args: argparse.Namespace) -> int:
    from ..errors import StorageError
    from ..log import backup
    from ..log.store import Log
    from ..maintenance import BACKUP_EXTRAS

    if not os.path.isdir(args.data):
        return fail("backup", f"{args.data} is not a directory", EXIT_FAILED)
    if os.path.exists(args.dest):
        return fail("backup", f"{args.dest} exists; a backup never overwrites", EXIT_FAILED)
    try:
        log = Log.open(args.data)
    except StorageError as exc:
        if "open in another process" in str(exc):
            return fail("backup", f"{exc}: a running server takes its own backups (--backup-dir, or "
                        "`kill -USR1 <server pid>` for one now)", EXIT_FAILED)
        return fail("backup", str(exc), EXIT_FAILED)
    try:
        manifest = backup.backup_sync(log, args.dest, extras=BACKUP_EXTRAS)
    except OSError as exc:
        return fail("backup", str(exc), EXIT_FAILED)
    finally:
        log.close()
    print(json.dumps(manifest, sort_keys=True))
    return EXIT_OK
