"""Progress lines on stderr for long CLI work (`homestream sync`, every `homestream bench`).

What must stay true: on a terminal a transient step is redrawn in place (carriage return, erase to the end of the line);
anywhere else (a pipe, a log file, CI) there is no escape code at all, and steps are plain lines at most one every
`every` seconds, the first once the work has taken that long (so a quick command, or one that fails at once,
prints no progress at all); a note always stays. stdout is never written.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable


class Progress:
    """Progress lines on stderr. `step()` is transient (redrawn on a terminal, rate-limited to one plain line
    every few seconds elsewhere); `note()` always stays."""

    def __init__(self, prefix: str, stream=None, quiet: bool = False, every: float = 5.0):
        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.quiet = quiet
        self.every = every
        self._open = False
        self._last = time.monotonic()  # plain lines: the first step shows only once the work took `every` s

    def step(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            print(f"\r{self.prefix}: {text}\x1b[K", end="", file=self.stream, flush=True)
            self._open = True
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            print(f"{self.prefix}: {text}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty and self._open:
            print(f"\r{self.prefix}: {text}\x1b[K", file=self.stream, flush=True)
        else:
            print(f"{self.prefix}: {text}", file=self.stream, flush=True)
        self._open = False
        self._last = time.monotonic()

    def count(self, what: str, total: int, items: Iterable, every: int = 0) -> Iterable:
        """Yield `items`, showing `what i/total` as it goes, and `what: total done in N s` at the end."""
        t0 = time.monotonic()
        every = every or max(1, total // 100)
        for i, item in enumerate(items, 1):
            if i % every == 0:
                self.step(f"{what} {i:,}/{total:,} ({i / total:.0%})")
            yield item
        self.note(f"{what}: {total:,} done in {time.monotonic() - t0:.1f} s")
