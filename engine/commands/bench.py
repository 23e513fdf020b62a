"""`homestream bench <name>`: dispatches to engine/bench/<name>.py.

Each bench module exposes `configure(parser)` and `run(args) -> int`, prints human-readable figures and, with
`--json`, one JSON object. Benchmarks never run in unit tests with timing assertions.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "log": "engine.bench.log",
    "match": "engine.bench.match",
    "http": "engine.bench.http",
    "fanout": "engine.bench.fanout",
    "sync": "engine.bench.sync",
    "retention": "engine.bench.retention",
    "restart": "engine.bench.restart",
    "policy": "engine.bench.policy",
    "workers": "engine.bench.workers",
    "relay": "engine.bench.relay",
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(parser))
    for name, module_name in BENCHES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("engine."):
                raise
            continue
        p = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0],
                           description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        module.configure(p)
        p.set_defaults(_bench=module)


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "bench", None):
        print("homestream bench: error: name a benchmark: " + ", ".join(BENCHES))
        return 2
    return int(args._bench.run(args) or 0)
