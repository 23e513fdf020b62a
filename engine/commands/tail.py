"""`homestream tail PATTERN...`: print events as they happen, resuming by itself after disconnects.

Invariants: stdout gets one line per event, in seq order, never the same seq twice (the client stream drops
duplicates); a gap is printed as such, never skipped silently; with --state the file holds the id of the last
printed event (written after the line is out), so a new `tail --state FILE` continues exactly after it;
Ctrl-C (or SIGTERM) exits 0 after printing `last: <id>` on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from ..client.cli_common import UsageError, add_client_options, make_client, report
from ..client.stream import Event, Gap

EXAMPLES = """
A pattern is <user>/pub/a/b.json (one key), <user>/pub/a/* (a folder), <user>/* (all of a user's keys; private
ones too when signed with that user's key), */pub/a/* (a folder of every user), */pub/a/b.json, or * (every
public event); /pub/a/* means your own user (the one of --key / HOMESTREAM_KEY).

Output: one line per event, `<event id> PUT pubky://<user><path> <size> bytes` or `<event id> DEL pubky://...`;
with --json the event's data object as the server sent it ({"seq":..,"user":..,"path":..,"hash":..,"size":..,
"ts":..}), and {"gap":{"from":N,"to":M}} for a gap. A gap prints `gap: events N..M were dropped by retention`.
Reconnects with back-off after a network error or a server restart and resumes after the last printed event.

examples:
  homestream tail '*'                                  # every public event from now on
  homestream tail '*/pub/app/*' --after 0              # the whole history of /pub/app/ of every user, then live
  homestream tail '*/pub/app/*' --state app.pos        # resume where the last run stopped (file updated per event)
  homestream tail <user>/pub/feed/* --json --inline    # JSON lines with small bodies inline
  homestream tail '*' --after 0 --no-live              # print the history and exit
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("patterns", metavar="PATTERN", nargs="+", help="what to follow (see below)")
    parser.add_argument("--after", metavar="ID", default=None,
                        help="start after this event id, 13-char seq or decimal seq (0 = from the start); "
                             "default: live events from now on")
    parser.add_argument("--json", action="store_true", help="print each event's JSON data object, one per line")
    parser.add_argument("--state", metavar="FILE", default=None,
                        help="resume from the id in FILE (if it exists, it wins over --after) and keep it updated")
    parser.add_argument("--inline", action="store_true", help="ask for small UTF-8 bodies inline in PUT events")
    parser.add_argument("--limit", type=_positive, default=None, metavar="N", help="exit after N events")
    parser.add_argument("--no-live", dest="live", action="store_false",
                        help="exit once the history is printed (needs --after or --state)")
    parser.add_argument("--wait", action="store_true",
                        help="if the server cannot be reached at start, keep trying (default: exit 1)")
    parser.add_argument("--max-delay", type=float, default=30.0, metavar="SECONDS",
                        help="longest wait between reconnection attempts (default: 30)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no reconnection notes on stderr")
    add_client_options(parser, "key file (default: $HOMESTREAM_KEY): signs the stream so your private events "
                               "show, and names the user of /pub/... patterns")


def format_event(ev: Event, as_json: bool) -> str:
    if as_json:
        return ev.data if ev.data else json.dumps({"seq": ev.seq, "user": ev.user, "path": ev.path})
    if ev.kind == "PUT":
        line = f"{ev.id} PUT {ev.uri} {ev.size} bytes"
        if ev.body is not None:
            line += " " + json.dumps(ev.body, ensure_ascii=False)
        return line
    return f"{ev.id} {ev.kind} {ev.uri}"


def format_gap(gap: Gap, as_json: bool) -> str:
    if as_json:
        if gap.upstream is not None:
            return json.dumps({"gap": {"upstream": gap.upstream, "from": gap.from_seq, "to": gap.to_seq}})
        return json.dumps({"gap": {"from": gap.from_seq, "to": gap.to_seq}})
    if gap.upstream is not None:
        return (f"gap: upstream {gap.upstream} events {gap.from_seq}..{gap.to_seq} were lost before the relay "
                "copied them")
    return f"gap: events {gap.from_seq}..{gap.to_seq} were dropped by retention"


class _Stop(KeyboardInterrupt):
    pass


class _Signals:
    """SIGINT/SIGTERM raise _Stop, except inside `section()` (printing a line and saving the position), where the
    stop waits until the section is over: a line is never printed without its position being saved."""

    def __init__(self) -> None:
        self.critical = False
        self.pending = False
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handler(self, signum, frame) -> None:
        if self.critical:
            self.pending = True
            return
        raise _Stop()

    def enter(self) -> None:
        self.critical = True

    def leave(self) -> None:
        self.critical = False
        if self.pending:
            raise _Stop()


def run(args: argparse.Namespace) -> int:
    return report("tail", lambda: _tail(args))


def _tail(args: argparse.Namespace) -> int:
    if not args.live and args.after is None and args.state is None:
        raise UsageError("--no-live needs --after ID or --state FILE (live-only has no history to print)")
    if args.max_delay <= 0:
        raise UsageError("--max-delay must be positive")
    explicit_key = args.key or os.environ.get("HOMESTREAM_KEY")
    client = make_client(args)
    own = client.user
    patterns = []
    for p in args.patterns:
        if p.startswith("/"):
            if own is None:
                client.close()
                raise UsageError(f"pattern {p!r} is a bare path: it needs --key or HOMESTREAM_KEY to name its user, "
                                 f"or write it as <user>{p} or *{p}")
            p = own + p
        patterns.append(p)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("homestream tail: %(message)s"))
    logger = logging.getLogger("homestream.client")
    if not args.quiet:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    signals = _Signals()
    signals.install()
    stream = None
    printed: str | None = None
    try:
        stream = client.subscribe(patterns, after=args.after, inline=args.inline, live=args.live,
                                  limit=args.limit, state=args.state, sign=bool(explicit_key) and own is not None,
                                  max_delay=args.max_delay, wait_first=args.wait)
        printed = stream.last_id
        try:
            for value in stream:
                signals.enter()
                if isinstance(value, Event):
                    _out(format_event(value, args.json))
                    printed = value.id
                elif isinstance(value, Gap):
                    _out(format_gap(value, args.json))
                    printed = stream.last_id
                # End shutdown/evicted: the stream reconnects by itself and logs it (stderr unless --quiet)
                stream.commit()  # the line is out: save its position now
                signals.leave()
        except KeyboardInterrupt:
            signals.critical = False
            print(f"last: {printed or 'none'}", file=sys.stderr, flush=True)
            return 0
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        print(f"last: {printed or 'none'}", file=sys.stderr, flush=True)
        return 0
    finally:
        signals.restore()
        if stream is not None:
            try:
                stream.close()
            except BaseException:
                pass
        client.close()
        logger.removeHandler(handler)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
