"""`homestream admin token|revoke|users|disable|enable|delete-user`: the admin API (SPEC 5.2) from a shell.

Needs the server's URL (`--url`, $HOMESTREAM_URL) and its admin secret file (`--admin-secret-file`,
$HOMESTREAM_ADMIN_SECRET_FILE). Output: `token` prints the new token alone; `users` prints one line per user
(user, bytes, keys, disabled), or the server's JSON with --json; the others print nothing. Exit 0 on success,
1 when the server refuses or cannot be reached, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import os

from ..admin.client import AdminClient, read_secret
from ..client.cli_common import UsageError, report
from ..client.http import DEFAULT_URL, URL_ENV

SECRET_ENV = "HOMESTREAM_ADMIN_SECRET_FILE"

EXAMPLES = """
examples:
  homestream admin token --url https://hs.example --admin-secret-file /etc/homestream/admin.secret
  homestream admin revoke <token>
  homestream admin users [--json]
  homestream admin disable <user>        # their writes are 403; reads unchanged
  homestream admin enable <user>
  homestream admin delete-user <user>    # deletes every key (one DEL event each) and forgets the signup
"""

ACTIONS = {"token": None, "revoke": "TOKEN", "users": None, "disable": "USER", "enable": "USER",
           "delete-user": "USER"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("action", choices=list(ACTIONS), help="what to do")
    parser.add_argument("target", nargs="?", help="the token (revoke) or user id (disable, enable, delete-user)")
    parser.add_argument("--url", metavar="URL", default=None, help=f"server URL (default: ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--admin-secret-file", metavar="FILE", default=None,
                        help=f"file holding the admin secret (default: ${SECRET_ENV})")
    parser.add_argument("--json", action="store_true", help="users: print the server's JSON")


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        needs = ACTIONS[args.action]
        if needs and not args.target:
            raise UsageError(f"admin {args.action} needs a {needs}")
        if not needs and args.target:
            raise UsageError(f"admin {args.action} takes no argument")
        path = args.admin_secret_file or os.environ.get(SECRET_ENV)
        if not path:
            raise UsageError(f"name the admin secret: --admin-secret-file FILE or ${SECRET_ENV}")
        url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
        with AdminClient(url, read_secret(path)) as admin:
            if args.action == "token":
                print(admin.token())
            elif args.action == "revoke":
                admin.revoke(args.target)
            elif args.action == "users":
                users = admin.users()
                if args.json:
                    print(json.dumps({"users": users}))
                else:
                    for u in users:
                        print(f"{u['user']}\t{u['bytes']}\t{u['keys']}\t{'disabled' if u['disabled'] else 'active'}")
            elif args.action == "disable":
                admin.disable(args.target)
            elif args.action == "enable":
                admin.enable(args.target)
            else:
                admin.delete_user(args.target)
        return 0

    return report("admin", body)
