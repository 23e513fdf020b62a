"""`homestream relay`: follow many homeservers and serve one merged, exactly resumable stream (SPEC 5.4).

Every server setting is a flag here too (the relay is a server: --data, --host, --port, --fsync, retention,
stream limits); `--upstream NAME=URL` may be repeated, and a TOML file given with --config may hold an
`[[upstream]]` list of tables with name, url and optional kind.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import Settings
from .serve import add_settings_flags, setup_logging

EXAMPLES = """
examples:
  homestream relay --data ./relay-data --port 6290 \\
      --upstream alice=http://10.0.0.5:6286 --upstream bob=https://hs.example.org
  homestream relay --config relay.toml      # [[upstream]] name = "a"  url = "http://..."  kind = "pubky"
  homestream tail '*' --url http://127.0.0.1:6290
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    add_settings_flags(parser, skip=frozenset({"upstream"}))
    parser.add_argument("--upstream", dest="upstream", action="append", default=None, metavar="NAME=URL",
                        help="an upstream to follow (repeat for each); kind detected, or set in the TOML file")


def run(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name, None) for name, _, _ in Settings.describe()}
    try:
        settings = Settings.load(args.config, overrides=overrides)
        from ..relay.upstreams import parse_upstreams

        parse_upstreams(settings.upstream)
    except (OSError, ValueError) as exc:
        print(f"homestream relay: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    from ..relay.app import build_relay
    from ..server import run as run_server

    try:
        return run_server(settings, build=build_relay)
    except ValueError as exc:
        print(f"homestream relay: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        logging.getLogger("homestream.relay").error("cannot start: %s", exc)
        return 1
