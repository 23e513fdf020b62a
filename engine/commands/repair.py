"""`homestream repair`: let an operator go on after the server refused to open a damaged log.

It reports exactly what is dropped (files, offsets, bytes, records, seqs), moves damaged files aside into
`<data>/damaged-<UTC time>/` (never deletes them), writes every valid record back with its seq, and records the
seqs no file holds any more so that they are never reused (engine/log/repair.py does the work).
Invariants: stdout gets the report, stderr progress and errors (one line, no traceback); the exit code is 0 when
the log is sound (after the repair, or already), 3 when --dry-run found something to repair, 1 on failure.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..client.cli_common import EXIT_FAILED, EXIT_OK, fail

EXIT_WOULD_REPAIR = 3

EXAMPLES = """
Stop the server first: the repair takes the log's lock. Run with --dry-run to see what it would do.

examples:
  homestream repair --data /var/lib/homestream --dry-run   # report only; exit 3 if something needs repair
  homestream repair --data /var/lib/homestream             # repair, then start the server again
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--data", metavar="DIR", required=True, help="the server's data directory (its --data)")
    parser.add_argument("--dry-run", action="store_true", help="only report what would be dropped; change nothing")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    from ..errors import StorageError
    from ..log import repair, segment

    directory = args.data
    if not os.path.isdir(directory):
        return fail("repair", f"{directory} is not a directory", EXIT_FAILED)

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        lock = segment.lock_directory(directory)
    except (StorageError, OSError) as exc:
        return fail("repair", f"{exc} (stop the server first)", EXIT_FAILED)
    try:
        plan = repair.analyse(directory, progress=progress)
        print(f"homestream repair: {directory}: {plan.segments} segment(s), {plan.bytes / (1 << 20):.1f} MiB, "
              f"{plan.kept_records} valid record(s)")
        for note in plan.notes:
            print(f"note     {note}")
        if not plan.needed:
            print("nothing to repair: the log opens as it is")
            return EXIT_OK
        for finding in plan.findings:
            print(finding.describe())
        for w in plan.writes:
            print(f"keep     {w.source}: seqs {w.first_seq}..{w.last_seq} ({w.count} record(s), {w.nbytes} bytes) "
                  f"-> {w.name}")
        print(f"summary: keeps {plan.kept_records} record(s); drops {plan.dropped_records} record(s), "
              f"{plan.dropped_bytes} byte(s); moves aside {len(plan.move)} file(s); new records start at seq "
              f"{plan.next_seq}")
        if args.dry_run:
            print("dry run: nothing was changed")
            return EXIT_WOULD_REPAIR
        aside = repair.execute(plan, progress=progress)
        if aside:
            print(f"moved the damaged file(s) to {aside}")
        progress("checking the repaired log")
        again = repair.analyse(directory)
        if again.needed:
            left = "; ".join(f.describe() for f in again.findings)
            return fail("repair", f"the log still needs repair after the repair: {left}", EXIT_FAILED)
        print("repaired: the server can start")
        return EXIT_OK
    except (StorageError, OSError) as exc:
        return fail("repair", str(exc), EXIT_FAILED)
    except Exception as exc:  # a bug: still one line, and the files are as `execute` left them (see its order)
        return fail("repair", f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED)
    finally:
        segment.unlock_directory(lock)
