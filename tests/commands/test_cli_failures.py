"""Every subcommand against its common failure cases, run as a user runs it (a subprocess): a non-zero exit, no
traceback, and a last stderr line `homestream <cmd>: error: ...` that names the cause and what to do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from e2e.harness import Key, ThreadServer, free_port
from engine.client.keys import write_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A running server, two key files, a plain file (to put folders under) and a bad TOML file."""
    tmp = tmp_path_factory.mktemp("failures")
    server = ThreadServer(tmp / "data").start()
    alice, bob = Key(b"\x0a" * 32), Key(b"\x0b" * 32)
    write_key(tmp / "alice.key", alice.signing_key)
    write_key(tmp / "bob.key", bob.signing_key)
    (tmp / "plain").write_text("not a folder")
    (tmp / "bad.toml").write_text("port = \n")
    (tmp / "unknown.toml").write_text("no_such_setting = 1\n")
    (tmp / "long.txt").write_text("line\n" * 100)
    yield {"tmp": tmp, "server": server, "url": server.url, "alice": alice.user, "bob": bob.user}
    server.stop()


def _cases(w: dict) -> list[tuple[str, list[str], str, int]]:
    """(name, argv, a fragment the error line must hold, exit code)."""
    tmp, url, port, bob = w["tmp"], w["url"], str(w["server"].port), w["bob"]
    dead = f"http://127.0.0.1:{free_port()}"
    plain = str(tmp / "plain")
    return [
        # serve
        ("serve: data directory held by another server", ["serve", "--data", str(tmp / "data"), "--port",
                                                          str(free_port())], "another server holds", 1),
        ("serve --workers 2: data directory held by another server",
         ["serve", "--workers", "2", "--data", str(tmp / "data"), "--port", str(free_port())],
         "another server holds", 1),
        ("serve: port in use", ["serve", "--data", str(tmp / "d2"), "--port", port], "--port", 1),
        ("serve: data directory under a file", ["serve", "--data", plain + "/d", "--port", str(free_port())],
         "--data", 1),
        ("serve: TOML error names the file", ["serve", "--config", str(tmp / "bad.toml")], "bad.toml", 2),
        ("serve: unknown TOML key", ["serve", "--config", str(tmp / "unknown.toml")], "no_such_setting", 2),
        ("serve: missing config file", ["serve", "--config", str(tmp / "none.toml")], "none.toml", 2),
        ("serve: port out of range", ["serve", "--port", "70000", "--data", str(tmp / "d3")], "port", 2),
        # keygen
        ("keygen: existing file", ["keygen", "--out", str(tmp / "alice.key")], "--force", 2),
        ("keygen: folder missing", ["keygen", "--out", plain + "/k.key"], "k.key", 2),
        # put / get / rm / ls
        ("put: no key", ["put", f"{bob}/pub/a.txt", plain, "--url", url], "--key", 2),
        ("put: key file missing", ["put", "/pub/a.txt", plain, "--url", url, "--key", str(tmp / "nokey")],
         "keygen", 2),
        ("put: another user's key", ["put", f"{bob}/pub/a.txt", plain, "--url", url, "--key",
                                     str(tmp / "alice.key")], "does not own", 1),
        ("put: input file missing", ["put", "/pub/a.txt", str(tmp / "nofile"), "--url", url, "--key",
                                     str(tmp / "alice.key")], "nofile", 2),
        ("put: server down", ["put", "/pub/a.txt", plain, "--url", dead, "--key", str(tmp / "alice.key")],
         "cannot reach", 1),
        ("put: invalid port in --url", ["put", "/pub/a.txt", plain, "--url", "http://127.0.0.1:99999", "--key",
                                        str(tmp / "alice.key")], "invalid port", 2),
        ("put: bad path", ["put", f"{bob}/pub/../x", plain, "--url", url, "--key", str(tmp / "bob.key")], "..",
         2),
        ("get: missing key", ["get", f"{bob}/pub/none.txt", "--url", url], "404", 1),
        ("get: output folder missing", ["get", f"{w['alice']}/pub/seeded.txt", "--url", url, "-o",
                                        plain + "/out.txt"], "out.txt", 2),
        ("get: another user's private path", ["get", f"{bob}/priv/x", "--url", url, "--key",
                                              str(tmp / "alice.key")], "does not own", 1),
        ("get: URL without scheme", ["get", f"{bob}/pub/x", "--url", "127.0.0.1:6286"], "http://", 2),
        ("rm: missing key", ["rm", "/pub/none.txt", "--url", url, "--key", str(tmp / "alice.key")], "404", 1),
        ("ls: not a user", ["ls", "nobody/pub/", "--url", url], "", 2),
        ("ls: server down", ["ls", f"{bob}/pub/", "--url", dead], "cannot reach", 1),
        # tail
        ("tail: unwritable --state", ["tail", "*", "--after", "0", "--url", url, "--state",
                                      plain + "/pos"], "--state", 1),
        ("tail: --state in a missing folder", ["tail", "*", "--after", "0", "--url", url, "--state",
                                               str(tmp / "none" / "pos")], "--state", 1),
        ("tail: --state is a folder", ["tail", "*", "--after", "0", "--url", url, "--state", str(tmp)], "--state",
         1),
        ("tail: --state is some other file", ["tail", "*", "--url", url, "--state", str(tmp / "bad.toml"),
                                              "--after", "0"], "not a stream position", 2),
        ("tail: --state is a long file", ["tail", "*", "--url", url, "--state", str(tmp / "long.txt")],
         "pass --state a file of its own", 2),
        ("tail: bad pattern", ["tail", "a*b", "--url", url], "pattern", 2),
        ("tail: server down", ["tail", "*", "--url", dead], "cannot reach", 1),
        ("tail: --no-live without a start", ["tail", "*", "--no-live", "--url", url], "--after", 2),
        # sync
        ("sync: folder under a file", ["sync", f"{bob}/pub/s/", plain + "/s", "--url", url], "cannot write", 1),
        ("sync: folder is a file", ["sync", f"{bob}/pub/s/", plain, "--url", url], "not a folder", 1),
        ("sync: not a storage", ["sync", f"{bob}/", str(tmp / "s"), "--url", url], "storage", 2),
        ("sync: server down", ["sync", f"{bob}/pub/s/", str(tmp / "s"), "--url", dead], "cannot reach", 1),
        # repair (when this checkout has it)
        ("repair: data directory held by the server", ["repair", "--data", str(tmp / "data")], "stop the server", 1),
        ("repair: not a directory", ["repair", "--data", plain], "not a directory", 1),
        # bench
        ("bench: no name", ["bench"], "name a benchmark", 2),
        ("bench: bad option value", ["bench", "log", "--records", "0"], "records", 2),
    ]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMESTREAM_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "engine.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.hard_timeout(240)
def test_every_subcommand_fails_with_one_line_and_no_traceback(world):
    import httpx

    from engine.client import Client

    with Client(world["url"], world["tmp"] / "alice.key") as client:  # something for `get -o` to fetch
        client.put("/pub/seeded.txt", b"seed")
    from engine.cli import COMMANDS

    cases = [c for c in _cases(world) if c[1][0] in COMMANDS or c[1][0] == "bench"]
    cases += [(f"{name}: unknown flag", [name, "--no-such-flag"], "", 2) for name in COMMANDS]  # new ones too
    assert {c[1][0] for c in cases} >= {"serve", "keygen", "put", "get", "rm", "ls", "tail", "sync", "bench"}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: _run(c[1], world["tmp"]), cases))
    problems = []
    for (name, argv, fragment, code), out in zip(cases, results):
        err = out.stderr.strip()
        last = err.splitlines()[-1] if err else ""
        command = argv[0]
        if "Traceback" in out.stderr:
            problems.append(f"{name}: traceback:\n{out.stderr}")
        elif out.returncode != code:
            problems.append(f"{name}: exit {out.returncode}, expected {code}: {err}")
        elif not re.match(rf"homestream( {command}( \w+)?)?: error: ", last) and not (
                command == "serve" and " ERROR homestream.server: cannot start: " in last):
            problems.append(f"{name}: last stderr line is not an error line: {err!r}")
        elif fragment not in last:
            problems.append(f"{name}: {fragment!r} not in {last!r}")
        elif command != "serve" and len(err.splitlines()) != 1:
            problems.append(f"{name}: more than one line on stderr: {err!r}")
    assert not problems, "\n".join(problems)
    assert httpx.get(world["url"] + "/healthz").status_code == 200  # the held server was never disturbed


def test_an_unforeseen_error_is_one_line_and_the_traceback_only_on_request(tmp_path, monkeypatch, capsys):
    from engine import cli

    def boom(args):
        raise RuntimeError("disk on fire\nsecond line")

    parser_module = type(sys)("fake_command")
    parser_module.configure = lambda parser: None
    parser_module.run = boom
    monkeypatch.setitem(sys.modules, "fake_command", parser_module)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("fake_command", "raises"))
    monkeypatch.delenv("HOMESTREAM_DEBUG", raising=False)
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "homestream boom: error: disk on fire second line (RuntimeError;" in err
    monkeypatch.setenv("HOMESTREAM_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["boom"])
