"""The `homestream` command: a thin dispatcher over one module per subcommand.

Each subcommand lives in its own module exposing `configure(parser)` (adds its flags, help and examples) and
`run(args) -> int` (the exit code). This file only wires them, so parts of the CLI can grow independently.
Invariant: a bad command line exits 2 with a one-line error, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("engine.commands.serve", "run the homeserver"),
    "keygen": ("engine.commands.keygen", "make a signing key file and print its user id"),
    "put": ("engine.commands.files", "store a file (from a path or stdin) at a key"),
    "get": ("engine.commands.files", "print the value stored at a key"),
    "rm": ("engine.commands.files", "delete a key"),
    "ls": ("engine.commands.files", "list a directory"),
    "tail": ("engine.commands.tail", "follow events matching patterns, resuming after disconnects"),
    "sync": ("engine.commands.sync", "reconcile a local folder with an append-only storage"),
    "relay": ("engine.commands.relay", "follow many homeservers and serve one merged, resumable stream"),
    "bench": ("engine.commands.bench", "run a benchmark: log, match, http, fanout, sync"),
    "signup": ("engine.commands.signup", "sign up on a server that takes signed-up users (with a token)"),
    "admin": ("engine.commands.admin", "the admin API: token, revoke, users, disable, enable, delete-user"),
    "repair": ("engine.commands.repair", "move damaged log files aside, keep every valid record"),
    "backup": ("engine.commands.backup", "copy the log (up to its durable seq) into a new directory"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="homestream", description="An event-streaming homeserver for signed personal data stores.")
    parser.add_argument("--version", action="version", version=f"homestream {__import__('engine').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("engine."):
                raise
            continue  # a subcommand whose module is not built in this checkout
        cmd = sub.add_parser(name, help=help_text, description=help_text,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        configure = getattr(module, f"configure_{name}", None) or module.configure
        configure(cmd)
        cmd.set_defaults(_module=module, _name=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = args._module
    run = getattr(module, f"run_{args._name}", None) or module.run
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
