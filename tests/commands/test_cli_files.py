"""keygen / put / get / rm / ls through the CLI against a real server."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness import ThreadServer
from engine.cli import main
from engine.client import load_key, user_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path):
    srv = ThreadServer(tmp_path / "data").start()
    yield srv
    srv.stop()


def cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_keygen_put_get_rm_ls_round_trip(capsys, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMESTREAM_KEY", raising=False)
    monkeypatch.setenv("HOMESTREAM_URL", server.url)
    code, out, err = cli(capsys, "keygen", "--out", "alice.key")
    assert code == 0
    user = out.strip()
    assert user == user_id(load_key("alice.key"))
    assert stat.S_IMODE(os.stat("alice.key").st_mode) == 0o600
    monkeypatch.setenv("HOMESTREAM_KEY", "alice.key")

    Path("post.json").write_bytes(b'{"hello":"world"}')
    code, out, err = cli(capsys, "put", "/pub/app/post.json", "post.json")
    assert code == 0 and out.startswith(f"created pubky://{user}/pub/app/post.json 17 bytes"), err
    code, out, err = cli(capsys, "put", f"pubky://{user}/pub/app/note.txt", "post.json", "--content-type", "text/x-note")
    assert code == 0 and out.startswith("created")
    code, out, err = cli(capsys, "put", "/pub/app/post.json", "post.json")
    assert code == 0 and out.startswith("updated")

    code, out, err = cli(capsys, "get", "/pub/app/post.json")
    assert (code, out) == (0, '{"hello":"world"}')
    code, out, err = cli(capsys, "get", f"{user}/pub/app/note.txt", "-o", "note.out")
    assert code == 0 and Path("note.out").read_bytes() == b'{"hello":"world"}' and "text/x-note" in err

    code, out, err = cli(capsys, "ls", "/pub/app/")
    assert code == 0 and out.splitlines() == [f"pubky://{user}/pub/app/note.txt", f"pubky://{user}/pub/app/post.json"]
    code, out, err = cli(capsys, "ls", f"pubky://{user}/pub/app", "--limit", "1", "--reverse")
    assert code == 0 and out.splitlines() == [f"pubky://{user}/pub/app/post.json"]
    assert err.strip() == f"more: --cursor pubky://{user}/pub/app/post.json"
    code, out, err = cli(capsys, "ls", "/pub/app/", "--limit", "5", "--cursor", f"pubky://{user}/pub/app/note.txt")
    assert code == 0 and out.splitlines() == [f"pubky://{user}/pub/app/post.json"] and err == ""

    code, out, err = cli(capsys, "rm", "/pub/app/post.json")
    assert code == 0 and out.startswith(f"deleted pubky://{user}/pub/app/post.json event=")
    code, out, err = cli(capsys, "get", "/pub/app/post.json")
    assert code == 1 and out == "" and err.count("\n") == 1 and "404" in err
    code, out, err = cli(capsys, "rm", "/pub/app/post.json")
    assert code == 1 and "404" in err
    code, out, err = cli(capsys, "ls", "/pub/app/")
    assert code == 0 and out.splitlines() == [f"pubky://{user}/pub/app/note.txt"]


def test_cli_in_a_subprocess_reads_stdin_and_writes_stdout(server, tmp_path):
    env = {**os.environ, "HOMESTREAM_URL": server.url, "HOMESTREAM_KEY": str(tmp_path / "k")}
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "engine.cli", *a], cwd=ROOT, env=env,  # noqa
                                          capture_output=True, timeout=20, **kw)
    made = run("keygen")
    assert made.returncode == 0, made.stderr
    put = run("put", "/pub/s.bin", input=b"\x00\xffbinary")
    assert put.returncode == 0, put.stderr
    got = run("get", "/pub/s.bin")
    assert got.returncode == 0 and got.stdout == b"\x00\xffbinary"


def test_private_get_uses_the_key(capsys, server, tmp_path, monkeypatch):
    monkeypatch.setenv("HOMESTREAM_URL", server.url)
    monkeypatch.delenv("HOMESTREAM_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    user = cli(capsys, "keygen", "--out", "k")[1].strip()
    Path("v").write_text("secret")
    assert cli(capsys, "put", "/priv/v", "v", "--key", "k")[0] == 0
    assert cli(capsys, "get", "/priv/v", "--key", "k")[1] == "secret"
    code, out, err = cli(capsys, "get", f"{user}/priv/v")
    assert code == 1 and "401" in err and err.count("\n") == 1
