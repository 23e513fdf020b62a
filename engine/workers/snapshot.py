"""/metrics for the whole server when it runs as several processes.

Each process (the writer and every worker) renders its own Metrics into `<run dir>/metrics.<name>` once a
second and whenever it gets SIGUSR1 (written to a temporary name, then renamed: a reader never sees half a
file). A worker asked for /metrics asks the others for a fresh snapshot, waits for them (at most 0.5 s), and
answers its own figures rendered now plus theirs:
- by default summed into one exposition with the names and labels of a single process, so dashboards and
  alerts do not change with --workers (`merge`); gauges that describe the one shared log (`homestream_log_*`,
  `homestream_keys`, `homestream_worker_applied_seq`) take the highest value instead of the sum;
- with `?per_worker=1`, every process's samples labelled `worker="<name>"` (`writer`, `0`, `1`, ...)
  (`merge_labelled`).
Both are pure. Invariant: every family's samples are contiguous and its HELP/TYPE lines come once, as the text
format asks.
"""

from __future__ import annotations

import glob
import logging
import os
import signal
from typing import Any, Callable

log = logging.getLogger("homestream.workers")

INTERVAL = 1.0
COLLECT_TIMEOUT = 0.5
PREFIX = "metrics."


class MetricsSnapshots:
    """This process's snapshot file, and the collection of every process's figures for a scrape.

    A scrape asks the other processes (SIGUSR1, only to pids that are children of our supervisor) to write their
    snapshot now and waits up to COLLECT_TIMEOUT for them, so /metrics is current, not a second behind; a
    process that does not answer in time (busy, restarting) is counted from its last snapshot."""

    def __init__(self, run_dir: str, name: str, metrics: Any, loop: Any):
        self.run_dir = run_dir
        self.name = name
        self.metrics = metrics
        self.loop = loop
        self.path = os.path.join(run_dir, PREFIX + name)
        self.written = 0
        loop.add_signal_handler(signal.SIGUSR1, self.write)
        self._timer = loop.call_soon(self._tick)

    def write(self) -> None:
        self.written += 1
        try:
            tmp = self.path + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(f"# process {self.name} pid {os.getpid()} written {self.written}\n".encode())
                fh.write(self.metrics.render())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write the metrics snapshot %s: %s", self.path, exc)

    def _tick(self) -> None:
        self.write()
        self._timer = self.loop.call_later(INTERVAL, self._tick)

    def collect(self, done: Callable[[bytes], None], per_worker: bool = False) -> None:
        """Ask the others for fresh snapshots, then done(the merged exposition), from the loop."""
        asked = {}
        for name, text in self.others().items():
            pid, written = _header(text)
            if pid and _sibling(pid):
                try:
                    os.kill(pid, signal.SIGUSR1)
                    asked[name] = written
                except ProcessLookupError:
                    pass
        deadline = self.loop.time() + COLLECT_TIMEOUT

        def check() -> None:
            texts = self.others()
            waiting = [n for n, w in asked.items() if _header(texts.get(n, b""))[1] <= w]
            if waiting and self.loop.time() < deadline:
                self.loop.call_later(0.005, check)
                return
            texts[self.name] = self.metrics.render()
            done(merge_labelled(texts) if per_worker else merge(texts))

        self.loop.call_later(0.002, check)

    def others(self) -> dict[str, bytes]:
        out = {}
        for path in glob.glob(os.path.join(self.run_dir, PREFIX + "*")):
            name = os.path.basename(path)[len(PREFIX):]
            if name == self.name or name.endswith(".tmp"):
                continue
            try:
                with open(path, "rb") as fh:
                    out[name] = fh.read()
            except OSError:
                continue
        return out

    def close(self) -> None:
        self._timer.cancel()
        try:
            self.loop.remove_signal_handler(signal.SIGUSR1)
        except (RuntimeError, ValueError):
            pass


def _header(text: bytes) -> tuple[int, int]:
    """(pid, writes so far) from a snapshot's first line; (0, 0) when absent."""
    first = text.split(b"\n", 1)[0].split()
    if len(first) == 7 and first[1] == b"process" and first[3] == b"pid" and first[5] == b"written":
        try:
            return int(first[4]), int(first[6])
        except ValueError:
            pass
    return 0, 0


def _sibling(pid: int) -> bool:
    """True if `pid` is a child of our own parent (the supervisor): never signal a recycled pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1]) == os.getppid()
    except (OSError, ValueError, IndexError):
        return False


SHARED_PREFIXES = ("homestream_log_", "homestream_keys", "homestream_worker_applied_seq")


def _parse(text: bytes):
    """(family, HELP/TYPE lines, [(metric with labels, value text)]) in order of appearance."""
    families: list[tuple[str, list[str], list[tuple[str, str]]]] = []
    current = None
    for line in text.decode("utf-8", "replace").splitlines():
        if not line:
            continue
        if line.startswith("# "):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                if current is None or current[0] != parts[2]:
                    current = (parts[2], [], [])
                    families.append(current)
                current[1].append(line)
            continue
        metric, _, value = line.rpartition(" ")
        base = metric.split("{", 1)[0]
        if current is None or current[0] != base:
            current = (base, [], [])
            families.append(current)
        current[2].append((metric, value))
    return families


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _format(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1 << 53 else repr(value)


def merge(texts: dict[str, bytes]) -> bytes:
    """One exposition from several processes' texts, samples of the same name and labels summed (max for
    gauges of the shared log)."""
    meta: dict[str, list[str]] = {}
    values: dict[str, dict[str, float]] = {}
    order: list[str] = []
    for name in sorted(texts):
        for family, lines, samples in _parse(texts[name]):
            if family not in meta:
                meta[family] = list(lines)
                values[family] = {}
                order.append(family)
            shared = family.startswith(SHARED_PREFIXES)
            acc = values[family]
            for metric, value in samples:
                v = _number(value)
                if metric in acc:
                    acc[metric] = max(acc[metric], v) if shared else acc[metric] + v
                else:
                    acc[metric] = v
    out: list[str] = []
    for family in order:
        out.extend(meta[family])
        out.extend(f"{metric} {_format(v)}" for metric, v in values[family].items())
    return ("\n".join(out) + "\n").encode("utf-8")


def merge_labelled(texts: dict[str, bytes]) -> bytes:
    """One exposition from several processes' texts, every sample labelled worker="<name>"."""
    meta: dict[str, list[str]] = {}
    samples_of: dict[str, list[str]] = {}
    order: list[str] = []
    for name in sorted(texts, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n)):
        label = f'worker="{name}"'
        for family, lines, samples in _parse(texts[name]):
            if family not in meta:
                meta[family] = list(lines)
                samples_of[family] = []
                order.append(family)
            for metric, value in samples:
                if metric.endswith("}"):
                    metric = metric[:-1] + "," + label + "}"
                else:
                    metric = metric + "{" + label + "}"
                samples_of[family].append(f"{metric} {value}")
    out: list[str] = []
    for family in order:
        out.extend(meta[family])
        out.extend(samples_of[family])
    return ("\n".join(out) + "\n").encode("utf-8")
