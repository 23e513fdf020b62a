"""`homestream sync <storage> <dir>`: downloads what the folder lacks and uploads what the server lacks."""

import httpx

from engine.cli import main
from engine.client.keys import write_key
from engine.names import item_name

from .test_sync_e2e import post_items


def test_cli_sync_downloads_and_uploads(server, alice, tmp_path, capsys):
    post_items(server.url, alice, "/pub/notes/", [b"a", b"b", b"c"])
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_bytes(b"local only")
    (folder / item_name(b"a")).write_bytes(b"a")
    keyfile = tmp_path / "alice.key"
    write_key(keyfile, alice.signing_key)
    code = main(["sync", "/pub/notes/", str(folder), "--url", server.url, "--key", str(keyfile)])
    assert code == 0
    out, err = capsys.readouterr()
    assert out.strip() == "received 2 uploaded 1 count 4"
    assert "received" in err
    assert (folder / item_name(b"b")).read_bytes() == b"b"
    r = httpx.get(f"{server.url}/{alice.user}/pub/notes/{item_name(b'local only')}")
    assert r.status_code == 200 and r.content == b"local only"
    # a second run has nothing to do
    assert main(["sync", f"{alice.user}/pub/notes/", str(folder), "--url", server.url, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == "received 0 uploaded 0 count 4"
