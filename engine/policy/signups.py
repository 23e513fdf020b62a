"""Who may write (SPEC 5.2 `--signup open|token|closed`, and disabled users). Pure.

- open: anyone with a valid signature;
- token: users signed up (with `POST /signup?token=<t>`) and users already holding data (a server switched
  from open keeps its users);
- closed: the same users, and no new signup;
- a disabled user may not write in any mode (reads are unchanged).
"""

from __future__ import annotations

MODES = ("open", "token", "closed")


def write_refusal(mode: str, *, disabled: bool, signed_up: bool, has_data: bool) -> str | None:
    """Why a write by this user is refused (the message of a 403), or None when it may write."""
    if disabled:
        return "this user is disabled on this server"
    if mode == "open" or signed_up or has_data:
        return None
    if mode == "token":
        return "this server takes writes from signed-up users only: POST /signup?token=<token> first"
    return "this server is closed to new users"


def signup_refusal(mode: str, token_ok: bool) -> str | None:
    """Why `POST /signup` is refused (403), or None. `token_ok`: the token given was outstanding."""
    if mode == "closed":
        return "this server is closed to new users"
    if mode == "token" and not token_ok:
        return "unknown, used or revoked signup token"
    return None
