"""`homestream signup [TOKEN]`: sign up on a server that takes writes from signed-up users (SPEC 5.2).

Sends `POST /signup?token=<TOKEN>` signed with your key (signed path /signup, empty body); the operator gives
you the token (`homestream admin token`). Exit 0 when the server answered 201.
"""

from __future__ import annotations

import argparse
import time
from urllib.parse import quote

import httpx

from ..client.cli_common import add_client_options, make_client, report
from ..client.errors import ApiError, ConnectionFailed
from ..http.auth import sign_request


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("token", nargs="?", default="", help="the signup token the operator gave you")
    add_client_options(parser)


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        client = make_client(args, need_key=True)
        target = client.url.rstrip("/") + "/signup" + (f"?token={quote(args.token, safe='')}" if args.token else "")
        try:
            for attempt in range(3):  # the same signup signed in the same second is a replay: move a second on
                auth = sign_request(client.signer.key, "POST", "/signup", b"", int(time.time()) + attempt)
                resp = httpx.post(target, headers={"authorization": auth}, timeout=30)
                if resp.status_code != 401 or b'"replayed"' not in resp.content:
                    break
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {client.url}: {exc}") from None
        finally:
            client.close()
        if resp.status_code != 201:
            raise ApiError.from_response(resp.status_code, resp.content, dict(resp.headers))
        print(client.user)
        return 0

    return report("signup", body)
