"""A hard time limit for every test of tests/client and tests/commands (pytest-timeout is not a dependency).

SIGALRM fails the test with HardTimeout after its limit (default 20 s, `@pytest.mark.hard_timeout(n)`);
if that cannot unwind it (stuck in C), faulthandler dumps the stacks and ends the run 15 s later, so CI never hangs.
"""

from __future__ import annotations

import faulthandler
import signal
import sys

import pytest

DEFAULT_SECONDS = 20.0


class HardTimeout(BaseException):
    """Not an Exception (nor an OSError like TimeoutError), so no library on the stack can swallow or wrap it."""


def register(config) -> None:
    config.addinivalue_line("markers", "hard_timeout(seconds): fail the test after this long (default 20 s)")


@pytest.fixture(autouse=True)
def hard_timeout(request):
    marker = request.node.get_closest_marker("hard_timeout")
    seconds = float(marker.args[0]) if marker else DEFAULT_SECONDS

    def on_alarm(signum, frame):
        raise HardTimeout(f"{request.node.nodeid} exceeded its hard timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + 15, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
