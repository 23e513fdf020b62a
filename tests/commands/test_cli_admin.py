"""`homestream admin ...` and `homestream signup` against a real server (SPEC 5.2's CLI)."""

import contextlib
import io
import json
import os
from types import SimpleNamespace

import httpx
import pytest

from e2e.harness import ThreadServer
from engine.cli import main

SECRET = "cli-test-secret-0123456789abcdef"


def cli(*args, env_extra=None):
    """Run the CLI in process (the server is in a thread): (returncode, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env_extra or {})}
    os.environ.update(env_extra or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture
def srv(tmp_path):
    secret = tmp_path / "admin.secret"
    secret.write_text(SECRET + "\n")
    server = ThreadServer(tmp_path / "data", signup="token", admin_secret_file=str(secret)).start()
    server.secret_file = str(secret)
    yield server
    server.stop()


@pytest.mark.hard_timeout(60)  # a dozen commands against a real server, on a shared 2-core machine
def test_token_signup_users_disable_enable_delete_from_the_command_line(srv, tmp_path, alice):
    opts = ["--url", srv.url, "--admin-secret-file", srv.secret_file]
    token = cli("admin", "token", *opts)
    assert token.returncode == 0, token.stderr
    token = token.stdout.strip()
    key = tmp_path / "alice.key"
    key.write_text(bytes(alice.signing_key).hex() + "\n")
    r = cli("signup", token, "--url", srv.url, "--key", str(key))
    assert r.returncode == 0 and r.stdout.strip() == alice.user, r.stderr
    again = cli("signup", token, "--url", srv.url, "--key", str(key))
    assert again.returncode == 1 and "403 forbidden" in again.stderr
    target = f"/{alice.user}/pub/b"
    assert httpx.put(srv.url + target, content=b"abc",
                     headers={"authorization": alice.auth("PUT", target, b"abc")}).status_code == 201
    users = cli("admin", "users", "--json", *opts)
    listed = {u["user"]: u for u in json.loads(users.stdout)["users"]}
    assert listed[alice.user]["bytes"] >= 3 and listed[alice.user]["disabled"] is False
    assert cli("admin", "disable", alice.user, *opts).returncode == 0
    assert f"{alice.user}\t" in cli("admin", "users", *opts).stdout
    assert "disabled" in cli("admin", "users", *opts).stdout
    assert cli("admin", "enable", alice.user, *opts).returncode == 0
    assert cli("admin", "delete-user", alice.user, *opts).returncode == 0
    assert httpx.get(srv.url + target).status_code == 404
    spare = cli("admin", "token", *opts).stdout.strip()
    assert cli("admin", "revoke", spare, *opts).returncode == 0
    r = cli("signup", spare, "--url", srv.url, "--key", str(key))
    assert r.returncode == 1 and "403" in r.stderr


@pytest.mark.hard_timeout(60)
def test_bad_secret_is_exit_1_and_bad_usage_exit_2(srv, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("nope-nope-nope-nope")
    r = cli("admin", "users", "--url", srv.url, "--admin-secret-file", str(wrong))
    assert r.returncode == 1 and "401" in r.stderr
    r = cli("admin", "disable", "--url", srv.url, "--admin-secret-file", srv.secret_file)
    assert r.returncode == 2 and "needs a USER" in r.stderr
    r = cli("admin", "users", "--url", srv.url, env_extra={"HOMESTREAM_ADMIN_SECRET_FILE": ""})
    assert r.returncode == 2
    r = cli("admin", "users", "--url", srv.url, env_extra={"HOMESTREAM_ADMIN_SECRET_FILE": srv.secret_file})
    assert r.returncode == 0
