"""`homestream serve`: run the homeserver. Every Settings field is a flag, generated from engine/config.py."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import Settings

EXAMPLES = """
examples:
  homestream serve                                  # ./homestream-data on 127.0.0.1:6286
  homestream serve --data /var/lib/homestream --host 0.0.0.0 --fsync always
  homestream serve --config homestream.toml         # any flag below as a TOML key
  HOMESTREAM_PORT=7000 homestream serve             # any flag as HOMESTREAM_<NAME>
  homestream serve --workers auto                   # one writer + a worker process per usable core
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    add_settings_flags(parser, skip=Settings.relay_only())


def add_settings_flags(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> None:
    """`--config` and one flag per Settings field (but those in `skip`)."""
    parser.add_argument("--config", metavar="FILE", help="TOML file with settings (flags and env override it)")
    for name, default, doc in Settings.describe():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=doc)
        elif isinstance(default, list):
            parser.add_argument(flag, dest=name, default=None, metavar="A,B",
                                type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
                                help=f"{doc} (comma-separated)")
        else:
            parser.add_argument(flag, dest=name, default=None, type=type(default),
                                metavar=name.upper(), help=f"{doc} (default: {default})")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name, None) for name, _, _ in Settings.describe()}
    try:
        settings = Settings.load(args.config, overrides=overrides)
    except (OSError, ValueError) as exc:
        print(f"homestream serve: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    from ..errors import StorageError
    from ..workers.supervisor import run as run_server  # --workers 1: the one-process server, unchanged

    try:
        return run_server(settings)
    except (OSError, StorageError) as exc:  # a damaged or missing log segment refuses the start (issue 21)
        logging.getLogger("homestream.server").error("cannot start: %s", exc)
        return 1
