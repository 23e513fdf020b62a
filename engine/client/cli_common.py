"""What the client subcommands (keygen, put/get/rm/ls, tail) share: the --url/--key options, making a Client
from them, and turning failures into one line on stderr with the right exit code.

Invariant (engine/cli.py's too): a bad command line or bad argument exits 2 with one line, the server being
unreachable or answering an error exits 1 with one line; no traceback reaches the user for either.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from .errors import ApiError, BadReference, ClientFailure, ConnectionFailed, KeyFileError
from .http import DEFAULT_URL, URL_ENV, Client
from .keys import KEY_ENV

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad argument found after argparse: one line, exit 2."""


def add_client_options(parser: argparse.ArgumentParser, key_help: str | None = None) -> None:
    group = parser.add_argument_group("server and key")
    group.add_argument("--url", metavar="URL", default=None,
                       help=f"server URL (default: ${URL_ENV} or {DEFAULT_URL})")
    group.add_argument("--key", metavar="FILE", default=None,
                       help=key_help or f"key file for signing (default: ${KEY_ENV}, a file path)")


def key_path(args: argparse.Namespace) -> str | None:
    return args.key or os.environ.get(KEY_ENV) or None


def make_client(args: argparse.Namespace, *, need_key: bool = False) -> Client:
    path = key_path(args)
    if path is None and need_key:
        raise KeyFileError(f"this needs a key: pass --key FILE or set {KEY_ENV} (make one with `homestream keygen`)")
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    return Client(url, path)


def report(prog: str, fn: Callable[[], int]) -> int:
    """Run a command body; map the client's failures to one line on stderr and an exit code."""
    try:
        return fn()
    except (UsageError, BadReference, KeyFileError) as exc:
        return fail(prog, str(exc), EXIT_USAGE)
    except ApiError as exc:
        text = exc.server_message or exc.code
        return fail(prog, f"server said {exc.status} {exc.code}: {text}" if text != exc.code
                    else f"server said {exc.status} {exc.code}", EXIT_FAILED)
    except ConnectionFailed as exc:
        return fail(prog, exc.message, EXIT_FAILED)
    except ClientFailure as exc:
        return fail(prog, exc.message, EXIT_FAILED)


def fail(prog: str, message: str, code: int) -> int:
    line = " ".join(str(message).split())  # one line whatever the message holds
    print(f"homestream {prog}: error: {line}", file=sys.stderr)
    return code
