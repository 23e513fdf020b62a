"""/metrics for the whole server when it runs as several processes.

Each process (the writer and every worker) renders its own Metrics into `<run dir>/metrics.<name>` once a
second (written to a temporary name, then renamed: a reader never sees half a file). A worker asked for
/metrics answers its own figures rendered now plus every other process's last snapshot (at most a second old):
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
from typing import Any

log = logging.getLogger("homestream.workers")

INTERVAL = 1.0
PREFIX = "metrics."


class MetricsSnapshots:
    def __init__(self, run_dir: str, name: str, metrics: Any, loop: Any):
        self.run_dir = run_dir
        self.name = name
        self.metrics = metrics
        self.loop = loop
        self.path = os.path.join(run_dir, PREFIX + name)
        self._timer = loop.call_soon(self._tick)

    def _tick(self) -> None:
        try:
            tmp = self.path + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(self.metrics.render())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write the metrics snapshot %s: %s", self.path, exc)
        self._timer = self.loop.call_later(INTERVAL, self._tick)

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

    def render_all(self, per_worker: bool = False) -> bytes:
        texts = self.others()
        texts[self.name] = self.metrics.render()
        return merge_labelled(texts) if per_worker else merge(texts)

    def close(self) -> None:
        self._timer.cancel()


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
