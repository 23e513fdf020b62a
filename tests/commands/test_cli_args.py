"""Bad command lines: one line on stderr and exit 2 (1 when the server is unreachable), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness import free_port
from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
USER = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("HOMESTREAM_KEY", raising=False)
    monkeypatch.setenv("HOMESTREAM_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.chdir(tmp_path)


def run_main(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


BAD = [
    ["put"],
    ["put", "/pub/a.json", "a", "b"],
    ["put", f"{USER}/pub/a.json", "missing-file.txt", "--key", "k"],
    ["put", "/pub/a.json", "-"],  # a bare path with no key
    ["get"],
    ["get", "nobody/pub/a.json"],
    ["get", f"{USER}/pub/../etc"],
    ["get", f"{USER}/pub/dir/"],
    ["rm", f"{USER}/pub/a.json"],  # no key to sign with
    ["rm", f"{USER}/pub/a.json", "--key", "no-such-key-file"],
    ["ls", f"{USER}/pub/", "--limit", "0"],
    ["ls", f"{USER}/pub/", "--limit", "ten"],
    ["ls", "/pub/"],
    ["tail"],
    ["tail", "x/y"],
    ["tail", "*/pub/a*"],
    ["tail", "*", "--after", "yesterday"],
    ["tail", "*", "--no-live"],
    ["tail", "*", "--limit", "-3"],
    ["tail", "/pub/*"],
    ["keygen", "--format", "pem"],
    ["nosuchcommand"],
    ["put", "/pub/a.json", "--bogus-flag"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) or "-" for a in BAD])
def test_bad_arguments_exit_2_with_one_line(capsys, argv):
    code, out, err = run_main(capsys, argv)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0], err
    assert "Traceback" not in err and out == ""


def test_keygen_refuses_to_overwrite(capsys, tmp_path):
    assert run_main(capsys, ["keygen", "--out", "k"])[0] == 0
    code, out, err = run_main(capsys, ["keygen", "--out", "k"])
    assert code == 2 and err.count("\n") == 1 and "--force" in err


@pytest.mark.parametrize("argv", [
    ["get", f"{USER}/pub/a.json"],
    ["ls", f"{USER}/pub/"],
    ["tail", "*"],
])
def test_unreachable_server_is_one_line_and_exit_1(capsys, argv):
    code, out, err = run_main(capsys, argv)
    assert code == 1 and err.count("\n") == 1 and "cannot reach" in err or "ConnectError" in err, err
    assert "Traceback" not in err


def test_put_with_unreachable_server_is_one_line(capsys, tmp_path):
    assert run_main(capsys, ["keygen", "--out", "k"])[0] == 0
    (tmp_path / "v.json").write_text("{}")
    code, out, err = run_main(capsys, ["put", "/pub/v.json", "v.json", "--key", "k"])
    assert code == 1 and err.count("\n") == 1 and "cannot reach" in err


@pytest.mark.parametrize("command", ["keygen", "put", "get", "rm", "ls", "tail"])
def test_every_command_has_help_with_examples(capsys, command):
    code, out, err = run_main(capsys, [command, "--help"])
    assert code == 0 and "examples:" in out and "usage: homestream " + command in out


def test_subprocess_bad_argument_has_no_traceback():
    env = {k: v for k, v in os.environ.items() if k != "HOMESTREAM_KEY"}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "tail", "*", "--after", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=20, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
