"""Settings: defaults, precedence (file < env < flags), validation, and docs for every field."""

from pathlib import Path

import pytest

from engine.config import Settings


def test_defaults_match_the_spec():
    s = Settings.load(env={})
    assert (s.data, s.host, s.port, s.fsync) == ("./homestream-data", "127.0.0.1", 6286, "batch")
    assert s.max_body_bytes == 8 * 1024 * 1024 and s.max_header_bytes == 16 * 1024
    assert s.max_request_line == 8 * 1024 and s.idle_timeout == 30 and s.header_timeout == 10
    assert s.inline_max == 4096 and s.send_queue_bytes == 1 << 20 and s.max_lag_bytes == 1 << 30


def test_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "h.toml"
    cfg.write_text('port = 7000\nfsync = "always"\nopen_writes = true\ncors_origins = ["https://a"]\n')
    s = Settings.load(str(cfg), env={"HOMESTREAM_PORT": "7001"})
    assert (s.port, s.fsync, s.open_writes, s.cors_origins) == (7001, "always", True, ["https://a"])
    s = Settings.load(str(cfg), env={"HOMESTREAM_PORT": "7001"}, overrides={"port": 7002})
    assert s.port == 7002


@pytest.mark.parametrize("overrides", [{"fsync": "sometimes"}, {"port": 0}, {"port": 70000},
                                       {"segment_bytes": 1000}, {"idle_timeout": 0}])
def test_invalid_settings_are_rejected(overrides):
    with pytest.raises(ValueError):
        Settings.load(env={}, overrides=overrides)


def test_unknown_setting_in_a_file_is_named(tmp_path):
    cfg = tmp_path / "h.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="prot"):
        Settings.load(str(cfg), env={})


def test_every_setting_is_documented_in_operations_md():
    text = (Path(__file__).resolve().parent.parent / "docs" / "OPERATIONS.md").read_text()
    for name, _, _ in Settings.describe():
        assert f"`--{name.replace('_', '-')}`" in text and f"HOMESTREAM_{name.upper()}" in text
