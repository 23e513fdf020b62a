"""What a new user meets first: keygen's hint is a path that works from anywhere, `serve` explains why it cannot
start in one line, and the README's "Use it" section works when typed as it stands."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness import ThreadServer
from engine.cli import main
from engine.commands.serve import start_error
from engine.config import Settings
from engine.errors import CorruptLog, LogLocked, StorageError

ROOT = Path(__file__).resolve().parents[2]


def test_keygen_hint_names_the_key_by_its_absolute_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOMESTREAM_KEY", raising=False)
    assert main(["keygen", "--out", "alice.key"]) == 0
    err = capsys.readouterr().err
    path = str(tmp_path / "alice.key")
    assert f"wrote {path} (mode 0600)" in err and f"--key {path}" in err and f"HOMESTREAM_KEY={path}" in err


@pytest.mark.parametrize("exc, words", [
    (LogLocked("the log in d is open in another process"), "another server holds the data directory ./d"),
    (CorruptLog("d/00000000000000000001.seg", 12, "bad crc"), "docs/STORAGE.md"),
    (StorageError("disk on fire"), "cannot open the log in ./d: disk on fire"),
    (OSError(errno.EADDRINUSE, "address in use"), "127.0.0.1:7000 is already in use"),
    (OSError(errno.EADDRNOTAVAIL, "no such address"), "pass --host"),
    (OSError(errno.EACCES, "denied"), "ports below 1024"),
    (PermissionError(errno.EACCES, "Permission denied", "./d/x"), "pass --data DIR for a directory you can write"),
])
def test_serve_start_errors_say_what_to_do(exc, words):
    settings = Settings.load(env={}, overrides={"data": "./d", "port": 7000})
    line = start_error(exc, settings)
    assert words in line and "\n" not in line


def _use_it_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.hard_timeout(90)
def test_the_readme_use_it_section_works_as_written(tmp_path):
    """Run every line of the README's block in one shell, in a fresh folder, against a real server. Only the URL
    is adapted (the server listens on a free port): HOMESTREAM_URL for the CLI, the port in the curl line."""
    lines = _use_it_block()
    assert lines[0].startswith("homestream keygen") and any(line.startswith("curl ") for line in lines)
    server = ThreadServer(tmp_path / "data").start()
    try:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "homestream"
        shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m engine.cli \"$@\"\n")
        shim.chmod(0o755)
        script = []
        for line in lines:
            line = line.replace("http://127.0.0.1:6286", server.url)
            if line.startswith("homestream tail"):
                line = f"timeout --preserve-status -s INT 4 {line}"  # it follows until Ctrl-C: send one after 4 s
            script.append(line)
        work = tmp_path / "fresh"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMESTREAM_")}
        env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", HOMESTREAM_URL=server.url,
                   PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
        out = subprocess.run(["bash", "-e", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True,
                             text=True, timeout=80)
    finally:
        server.stop()
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    user = out.stdout.splitlines()[0]
    assert re.fullmatch(r"[ybndrfg8ejkmcpqxot1uwisza345h769]{52}", user)
    assert f"created pubky://{user}/pub/app/post.json 18 bytes" in out.stdout
    assert '{"hello":"world"}\n' in out.stdout  # get
    assert re.search(rf"0000000000001\.{user} PUT pubky://{user}/pub/app/post.json 18 bytes", out.stdout)  # tail
    assert "event: PUT" in out.stdout and '"path":"/pub/app/post.json"' in out.stdout  # curl
    assert "event: end" in out.stdout and '"reason":"history"' in out.stdout
    assert f"HOMESTREAM_KEY={work}/alice.key" in out.stderr
