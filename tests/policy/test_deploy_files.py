"""The files of docs/deploy/ say what docs/OPERATIONS.md promises (the nginx site runs in tests/e2e/test_behind_nginx.py)."""

from pathlib import Path

import pytest

from engine.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"


def test_the_example_settings_load_and_describe_a_public_server(tmp_path):
    text = (DEPLOY / "homestream.toml").read_text()
    secret = tmp_path / "admin.secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    cfg = tmp_path / "h.toml"
    cfg.write_text(text.replace("/etc/homestream/admin.secret", str(secret)))
    s = Settings.load(str(cfg), env={})
    assert s.signup == "token" and s.user_quota_bytes > 0 and s.host == "127.0.0.1"
    assert s.rate_user_writes > 0 and s.rate_ip_requests > 0 and s.rate_ip_streams > 0
    assert "127.0.0.1/32" in s.trusted_proxies


def test_the_systemd_unit_stops_gracefully_restarts_and_is_sandboxed():
    unit = (DEPLOY / "homestream.service").read_text()
    for line in ("KillSignal=SIGTERM", "Restart=on-failure", "LimitNOFILE=", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/homestream", "TimeoutStopSec="):
        assert line in unit


def test_an_admin_secret_file_that_is_missing_or_empty_is_refused_at_load(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        Settings.load(env={}, overrides={"admin_secret_file": str(empty)})
    with pytest.raises(ValueError, match="cannot read"):
        Settings.load(env={}, overrides={"admin_secret_file": str(tmp_path / "missing")})
