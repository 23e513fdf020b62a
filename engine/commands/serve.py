"""`homestream serve`: run the homeserver. Every Settings field is a flag, generated from engine/config.py.

Invariant: whatever stops the start is one line on stderr saying what to do, never a traceback: a bad setting or
TOML file (`homestream serve: error: ...`, exit 2, before logging starts), or, once it has, an ERROR log line
`cannot start: ...` and exit 1 (a data directory another server holds or that cannot be written, a damaged log,
a port in use).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import tomllib

from ..config import Settings
from ..errors import CorruptLog, LogLocked, StorageError

EXAMPLES = """
examples:
  homestream serve                                  # ./homestream-data on 127.0.0.1:6286
  homestream serve --data /var/lib/homestream --host 0.0.0.0 --fsync always
  homestream serve --config homestream.toml         # any flag below as a TOML key
  HOMESTREAM_PORT=7000 homestream serve             # any flag as HOMESTREAM_<NAME>
  homestream serve --workers auto                   # one writer + a worker process per usable core

The server stays in the foreground and logs to stderr; stop it with Ctrl-C or SIGTERM (it finishes in-flight
writes first). Use a second terminal for the client commands (put, get, tail, ...).
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
    except tomllib.TOMLDecodeError as exc:
        return _fail(f"{args.config}: not valid TOML: {exc}", 2)
    except OSError as exc:
        return _fail(f"cannot read the config file {exc.filename or args.config}: {exc.strerror or exc}", 2)
    except ValueError as exc:
        where = f" (from {args.config}, HOMESTREAM_* or the flags)" if args.config else ""
        return _fail(f"{exc}{where}", 2)
    setup_logging(settings.log_level)
    from ..workers.supervisor import run as run_server  # --workers 1: the one-process server, unchanged

    try:
        return run_server(settings, lambda exc: start_error(exc, settings))
    except (OSError, StorageError) as exc:  # a held, damaged or missing log, a port in use: one line each
        line = " ".join(start_error(exc, settings).split())
        logging.getLogger("homestream.server").error("cannot start: %s", line)
        return 1


def start_error(exc: BaseException, settings: Settings) -> str:
    """One line saying why the server could not start and what to do about it."""
    data, where = settings.data, f"{settings.host}:{settings.port}"
    if isinstance(exc, LogLocked):
        return (f"another server holds the data directory {data} (its lock is taken); stop that server, "
                f"or pass --data DIR to serve another directory")
    if isinstance(exc, CorruptLog):
        return f"cannot open the log in {data}: {exc} (see docs/STORAGE.md, recovery)"
    if isinstance(exc, StorageError):
        return f"cannot open the log in {data}: {exc}"
    code = getattr(exc, "errno", None)
    if code == errno.EADDRINUSE:
        return f"{where} is already in use (another server?); stop it, or pass --port N"
    if code == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: no such address on this machine; pass --host ADDRESS"
    if code == errno.EACCES and getattr(exc, "filename", None) is None:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); pass --port N"
    if getattr(exc, "filename", None) is not None:
        return (f"cannot use the data directory {data}: {exc.filename}: {exc.strerror}; "
                f"pass --data DIR for a directory you can write")
    return f"cannot start on {where} with data in {data}: {exc.strerror or exc}"


def _fail(message: str, code: int) -> int:
    print(f"homestream serve: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code
