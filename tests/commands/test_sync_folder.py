"""`homestream sync` with real folders: links out of the folder are never followed, received files get the
umask's mode, progress uses escape codes only on a terminal, the counts read right, --help says how files are
named and that subfolders are skipped."""

from __future__ import annotations

import io
import os
import stat

import pytest

from e2e.harness import Key, ThreadServer
from engine.cli import main
from engine.client import Client
from engine.client.keys import write_key
from engine.client.progress import Progress
from engine.commands.sync import read_folder
from engine.names import item_name


@pytest.fixture
def server(tmp_path):
    srv = ThreadServer(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def alice_key(tmp_path):
    key = Key(b"\x05" * 32)
    write_key(tmp_path / "alice.key", key.signing_key)
    return key, str(tmp_path / "alice.key")


def _sync(capsys, *argv):
    code = main(["sync", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_links_out_of_the_folder_are_skipped_with_a_warning_and_never_uploaded(tmp_path, server, alice_key,
                                                                                capsys):
    key, keyfile = alice_key
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the folder")
    folder = tmp_path / "s2"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "deep.txt").write_bytes(b"in a subfolder")
    (folder / "one.txt").write_bytes(b"one")
    (folder / "link").symlink_to(secret)
    (folder / "inlink").symlink_to("one.txt")  # inside the folder: the same item as one.txt
    (folder / "dangling").symlink_to(tmp_path / "nowhere")
    code, out, err = _sync(capsys, "/pub/s2/", str(folder), "--url", server.url, "--key", keyfile)
    assert code == 0, err
    assert out == "received 0 uploaded 1 count 1\n"
    assert "warning: skipped 2 symbolic links" in err and "dangling, link" in err
    assert "skipped 1 subfolder" in err
    with Client(server.url) as hs:
        assert hs.list(f"{key.user}/pub/s2/").entries == [f"pubky://{key.user}/pub/s2/{item_name(b'one')}"]


def test_read_folder_follows_only_links_to_files_inside(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a").write_bytes(b"a")
    (folder / ".hidden").write_bytes(b"h")
    (folder / "to_a").symlink_to(folder / "a")
    (folder / "to_parent").symlink_to(tmp_path)
    (folder / "to_out").symlink_to("../f2/x")
    (tmp_path / "f2").mkdir()
    (tmp_path / "f2" / "x").write_bytes(b"x")
    items, links, subfolders = read_folder(folder)
    assert items == [b"a", b"a"] and links == ["to_out", "to_parent"] and subfolders == 0


def test_received_files_get_the_umask_mode_not_0600(tmp_path, server, alice_key, capsys):
    key, keyfile = alice_key
    with Client(server.url, key.signing_key) as hs:
        hs.post("/pub/feed/", b"item one")
    old = os.umask(0o027)
    try:
        code, out, err = _sync(capsys, f"{key.user}/pub/feed/", str(tmp_path / "feed"), "--url", server.url)
    finally:
        os.umask(old)
    assert code == 0, err
    got = tmp_path / "feed" / item_name(b"item one")
    assert got.read_bytes() == b"item one"
    assert stat.S_IMODE(got.stat().st_mode) == 0o640


def test_progress_without_a_terminal_has_no_escape_codes_and_counts_read_right(tmp_path, server, alice_key,
                                                                               capsys):
    key, keyfile = alice_key
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "n.txt").write_bytes(b"12345")
    code, out, err = _sync(capsys, "/pub/notes/", str(folder), "--url", server.url, "--key", keyfile)
    assert code == 0
    assert "\r" not in err and "\x1b" not in err
    assert "0 items received, 1 item uploaded (5 bytes), the server has 1 item (the storage was new" in err
    code, out, err = _sync(capsys, "/pub/notes/", str(tmp_path / "copy"), "--url", server.url, "--key", keyfile)
    assert code == 0 and out == "received 1 uploaded 0 count 1\n"
    sent = int(err.split("1 sync request, ")[1].split(" bytes")[0].replace(",", ""))
    assert sent > 100  # the request line, headers and sketch: never "0 bytes sent"


def test_progress_on_a_terminal_redraws_one_line():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    p = Progress("homestream sync", stream=s)
    p.step("1 local item, reconciling…")
    p.note("done")
    assert s.getvalue() == "\rhomestream sync: 1 local item, reconciling…\x1b[K\rhomestream sync: done\x1b[K\n"
    quiet = Tty()
    Progress("homestream sync", stream=quiet, quiet=True).note("x")
    assert quiet.getvalue() == ""


def test_help_says_files_are_named_by_content_hash_and_subfolders_are_skipped(capsys):
    with pytest.raises(SystemExit):
        main(["sync", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "names items by the hash of their content" in text and "subfolders are skipped" in text
    assert "files received are stored as <item name>" in text
    assert "symbolic links are followed only to files inside DIR" in text
