"""/metrics for the whole server when it runs as several processes.

Each process (the writer and every worker) renders its own Metrics into `<run dir>/metrics.<name>` once a
second (written to a temporary name, then renamed: a reader never sees half a file). A worker asked for
/metrics answers its own figures rendered now, plus every other process's last snapshot, each sample labelled
`worker="<name>"` (`writer`, `0`, `1`, ...): sum by name to get the server's totals. `merge` is pure.

Invariant: every family's samples are contiguous and its HELP/TYPE lines come once, as the text format asks.
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

    def render_all(self) -> bytes:
        texts = self.others()
        texts[self.name] = self.metrics.render()
        return merge(texts)

    def close(self) -> None:
        self._timer.cancel()


def merge(texts: dict[str, bytes]) -> bytes:
    """One exposition from several processes' texts, every sample labelled worker="<name>"."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    order: list[str] = []
    for name in sorted(texts, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n)):
        current = None
        for line in texts[name].decode("utf-8", "replace").splitlines():
            if not line:
                continue
            if line.startswith("# "):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    current = parts[2]
                    if current not in families:
                        families[current] = ([], [])
                        order.append(current)
                    meta = families[current][0]
                    if len(meta) < 2 and line not in meta:
                        meta.append(line)
                continue
            metric, _, value = line.rpartition(" ")
            label = f'worker="{name}"'
            if metric.endswith("}"):
                metric = metric[:-1] + "," + label + "}"
                base = metric[:metric.index("{")]
            else:
                base = metric
                metric = metric + "{" + label + "}"
            family = current if current is not None and base.startswith(current) else base
            if family not in families:
                families[family] = ([], [])
                order.append(family)
            families[family][1].append(f"{metric} {value}")
    lines: list[str] = []
    for family in order:
        meta, samples = families[family]
        lines.extend(meta)
        lines.extend(samples)
    return ("\n".join(lines) + "\n").encode("utf-8")
