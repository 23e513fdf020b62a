"""Sparse history reads: the records a filter wants between two seqs, found in C over raw log slices
(engine/native/scan.py), decoded in Python only when they are wanted.

Used by the pubky endpoints (an /events/ page, a reverse /events-stream) and by the catch-up of streams whose
filter is not one pattern (engine/pubsub/subscription.py). What must stay true:
- a call examines at most `budget` records and returns at most `max_hits`; `last` is the seq of the last
  record examined, so a caller that stops early can resume at last + 1 without skipping or repeating anything;
- `complete` is True only when every record with seq in [start, until] was examined;
- records are returned in seq order, decoded from the log's own bytes (values are views into the log's maps,
  valid while the caller runs on the loop, as for Log.read_from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..log.record import DEL, decode_at
from ..native.scan import ScanFilter, Scanner

__all__ = ["HistoryPage", "ScanFilter", "scan"]

_scanner: Scanner | None = None  # one hits buffer for the event loop (used synchronously)
HITS = 4096


class Totals:
    """Records examined by history scans in this process (the metric homestream_history_records_examined_total)."""

    examined = 0


TOTALS = Totals()


@dataclass(slots=True)
class HistoryPage:
    records: list[Any] = field(default_factory=list)
    last: int = 0  # seq of the last record examined (0: none)
    examined: int = 0
    complete: bool = True


def scan(log: Any, start: int, until: int, filt: ScanFilter, *, budget: int, max_hits: int) -> HistoryPage:
    """Records with start <= seq <= until passing `filt`, in order, within the budgets (see the module)."""
    global _scanner
    page = HistoryPage(last=max(0, start - 1))
    if until < start or max_hits <= 0:
        return page
    if budget <= 0:
        page.complete = False
        return page
    if not getattr(log, "native_scan", True):
        return _scan_py(log, start, until, filt, budget, max_hits, page)
    scanner = _scanner
    if scanner is None:
        scanner = _scanner = Scanner(HITS)
    records = page.records
    for _first, last, view in log.read_raw(start, until=until):
        off = 0
        while True:
            more, consumed, seq, n, hits = scanner.scan(view[off:] if off else view, until, filt,
                                                        budget - page.examined, max_hits - len(records))
            for h in hits:
                records.append(decode_at(view, off + h, verify=False)[0])
            page.examined += n
            TOTALS.examined += n
            if seq:
                page.last = seq
            off += consumed
            if not more:
                break
            if len(records) >= max_hits or page.examined >= budget:
                page.complete = False
                return page
        page.last = max(page.last, min(last, until))  # the slice was walked to its end
    page.last = max(page.last, until)
    return page


def _scan_py(log: Any, start: int, until: int, filt: ScanFilter, budget: int, max_hits: int,
             page: HistoryPage) -> HistoryPage:
    """`scan` in Python, for a log that holds version 2 records (a relay's: csrc/scan.c reads version 1 only).
    The same filter as scanWanted in csrc/scan.c, and only PUT/DEL records."""
    users, prefix, reader = filt.users, filt.prefix, filt.reader
    for record in log.read_from(start, until=until):
        if page.examined >= budget or len(page.records) >= max_hits:
            page.complete = False
            return page
        page.examined += 1
        TOTALS.examined += 1
        page.last = record.seq
        if record.kind > DEL or not record.path.startswith(prefix):
            continue
        if not record.path.startswith("/pub/") and (reader is None or record.user != reader):
            continue
        if users is not None:
            bounds = users.get(record.user)
            if bounds is None or record.seq <= bounds[0] or (bounds[1] and record.seq >= bounds[1]):
                continue
        page.records.append(record)
    page.last = max(page.last, until)
    return page
