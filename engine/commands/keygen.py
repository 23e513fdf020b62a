"""`homestream keygen`: make an ed25519 signing key, write its seed to a file (mode 0600), print the user id.

Invariants: an existing file is never overwritten without --force; the file holds only the 32-byte seed (hex by
default, raw with --format raw), which engine.client.keys.load_key reads back; stdout gets only the user id.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from ..client.cli_common import report
from ..client.keys import KEY_ENV, generate_key, user_id, write_key

DEFAULT_FILE = "homestream.key"

EXAMPLES = f"""
The key file holds the 32-byte ed25519 seed as 64 hex characters and a newline (--format raw: the 32 bytes).
Keep it secret: whoever has it can write as this user. The user id is printed on stdout.

examples:
  homestream keygen --out alice.key            # writes alice.key (mode 0600), prints the user id
  export HOMESTREAM_KEY=$PWD/alice.key         # then put/rm/ls sign with it
  homestream keygen                            # writes ${KEY_ENV} if set, else ./{DEFAULT_FILE}
  homestream keygen --out alice.key --force    # replace an existing key (the old identity is lost)
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--out", "-o", metavar="FILE", default=None,
                        help=f"where to write the key (default: ${KEY_ENV} or ./{DEFAULT_FILE})")
    parser.add_argument("--format", choices=("hex", "raw"), default="hex",
                        help="hex: 64 hex characters and a newline (default); raw: the 32 seed bytes")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        out = args.out or os.environ.get(KEY_ENV) or DEFAULT_FILE
        key = generate_key()
        path = os.path.abspath(write_key(out, key, fmt=args.format, force=args.force))
        print(user_id(key))
        print(f"wrote {path} (mode 0600); sign with --key {path} or export HOMESTREAM_KEY={shlex.quote(path)}",
              file=sys.stderr)
        return 0

    return report("keygen", body)
