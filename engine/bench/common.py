"""What every `homestream bench` shares: option types, progress on stderr, figures with units and a verdict
against their target, a plain-text table, and temporary data that is removed on exit, Ctrl-C and SIGTERM.

What must stay true:
- stdout carries the result only (the table, or with --json one JSON object); progress and notes go to stderr,
  redrawn in place (\\r, erase-line) only when stderr is a terminal, plain lines otherwise;
- a verdict is "met" or "not met" only for a figure measured at the size its target is stated for; otherwise
  it is "n/a" with the reason (e.g. "target is for --full");
- `Scratch` removes its folders however the run ends: normal exit, an exception, SIGINT, or SIGTERM (turned into
  SystemExit so `finally` blocks, and the servers they stop, run first). Only kill -9 can leave one behind.
"""

from __future__ import annotations

import argparse
import atexit
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..client.progress import Progress  # noqa: F401  (re-exported: every bench takes it from here)

# ---------------------------------------------------------------- options


def positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_size_options(parser: argparse.ArgumentParser, quick: str, full: str) -> None:
    """--full (and --json, added by engine/commands/bench.py); defaults are shown by ArgumentDefaultsHelpFormatter."""
    parser.add_argument("--full", action="store_true",
                        help=f"the full run the targets are stated for ({full}) instead of the quick default "
                             f"({quick}: quick)")


def pick(args: argparse.Namespace, name: str, quick: Any, full: Any) -> Any:
    """An option's value: the one given on the command line, else the --full or the quick default."""
    value = getattr(args, name, None)
    if value is not None:
        return value
    return full if getattr(args, "full", False) else quick


# ---------------------------------------------------------------- progress: engine/client/progress.py (sync too)


# ---------------------------------------------------------------- figures, verdicts, tables


@dataclass
class Figure:
    """One measured figure, its unit, and its target (op '>=' or '<=' and a bound), if it has one."""

    name: str
    value: float | None
    unit: str = ""
    op: str | None = None
    bound: float | None = None
    judged: bool = True  # False: measured at a size the target is not stated for
    why: str = "target is for --full"
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.op is None or self.bound is None:
            return ""
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "n/a (not measured)"
        if not self.judged:
            return f"n/a ({self.why})"
        ok = self.value >= self.bound if self.op == ">=" else self.value <= self.bound
        return "met" if ok else "NOT MET"

    @property
    def target(self) -> str:
        if self.op is None or self.bound is None:
            return ""
        return f"{'≥' if self.op == '>=' else '≤'} {human(self.bound)} {self.unit}".rstrip()

    def row(self) -> list[str]:
        shown = "-" if self.value is None else f"{human(self.value)} {self.unit}".rstrip()
        return [self.name, shown, self.target, self.verdict, self.note]

    def as_json(self) -> dict:
        out: dict[str, Any] = {"value": self.value, "unit": self.unit}
        if self.op is not None:
            out.update(target=f"{self.op} {self.bound}", verdict=self.verdict)
        return out


def human(value: float) -> str:
    """A number as people read it: thousands separated, a sensible count of digits."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(rows: list[list[str]], header: list[str] | None = None) -> str:
    """Left-aligned text columns; empty trailing columns are dropped."""
    body = [list(map(str, r)) for r in rows]
    rows = ([list(header)] if header else []) + body
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    while width > 1 and all(not r[width - 1] for r in rows[1 if header else 0:]):
        width -= 1  # a column no row fills (a note column with no notes) is left out, header and all
    sizes = [max(len(r[i]) for r in rows) for i in range(width)]
    lines = ["  ".join(c.ljust(sizes[i]) for i, c in enumerate(r[:width])).rstrip() for r in rows]
    if header:
        lines.insert(1, "  ".join("-" * s for s in sizes))
    return "\n".join(lines)


def report(title: str, figures: list[Figure], out=None) -> None:
    """The title, one table of figures with their targets and verdicts, and a one-line summary."""
    out = out or sys.stdout
    print(title, file=out)
    print(table([f.row() for f in figures], ["figure", "measured", "target", "verdict", "note"]), file=out)
    judged = [f for f in figures if f.verdict in ("met", "NOT MET")]
    if judged:
        missed = [f.name for f in judged if f.verdict == "NOT MET"]
        print(f"targets: {len(judged) - len(missed)} of {len(judged)} met"
              + (f"; not met: {', '.join(missed)}" if missed else ""), file=out)
    print(file=out, flush=True)


# ---------------------------------------------------------------- temporary data


class Scratch:
    """Temporary folders for one run, removed on exit, on an exception, on SIGINT and on SIGTERM.

    Use as `with Scratch("hs-fanout-") as scratch: path = scratch.path`. SIGTERM is turned into SystemExit(143)
    while it is active (then the previous handler comes back), so the caller's `finally` blocks run."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.path = ""
        self._previous: Any = None
        self._done = False

    def __enter__(self) -> "Scratch":
        self.path = tempfile.mkdtemp(prefix=self.prefix)
        atexit.register(self.cleanup)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def cleanup(self) -> None:
        if not self._done and self.path:
            self._done = True
            shutil.rmtree(self.path, ignore_errors=True)
            atexit.unregister(self.cleanup)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0
