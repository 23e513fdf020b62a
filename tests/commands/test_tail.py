"""`homestream tail` end to end: across server restarts (SIGTERM and kill -9), with a state file, with gaps."""

from __future__ import annotations

import json

import nacl.signing
import pytest

from e2e.harness import ProcessServer, ThreadServer
from engine.client import Client, user_id
from engine.names import event_id, parse_resume_point

from client.sse_fake import USER as FAKE_USER, FakeSSE, end_frame, event_frame, gap_frame
from .tailproc import TailProc

KEY = nacl.signing.SigningKey(b"\x11" * 32)
USER = user_id(KEY)


def seqs(lines):
    return [json.loads(line)["seq"] for line in lines if line.startswith("{\"seq\"")]


def write(url, first, count, prefix="/pub/t/"):
    with Client(url, KEY) as client:
        for i in range(first, first + count):
            client.put(f"{prefix}{i}.json", json.dumps({"i": i}))


@pytest.mark.hard_timeout(55)
def test_tail_keeps_going_across_server_restarts_without_duplicate_or_hole(tmp_path):
    server = ProcessServer(tmp_path / "data").start()
    tail = None
    try:
        tail = TailProc(["*/pub/t/*", "--json", "--after", "0", "--max-delay", "0.5", "--url", server.url])
        write(server.url, 1, 5)
        tail.wait_lines(5)
        code, out = server.terminate()  # SIGTERM: the stream gets end/shutdown
        assert code == 0, out
        write_while_down = ProcessServer(tmp_path / "data", port=server.port).start()
        server = write_while_down
        write(server.url, 6, 5)
        tail.wait_lines(10)
        server.kill()  # kill -9: the connection just breaks
        server = ProcessServer(tmp_path / "data", port=server.port).start()
        write(server.url, 11, 5)
        tail.wait_lines(15)
        assert tail.interrupt() == 0
        assert seqs(tail.lines) == list(range(1, 16))  # every seq once, in order
        last = tail.stderr.strip().splitlines()[-1]
        assert last.startswith("last: ") and parse_resume_point(last[6:]) == 15
        assert "reconnecting" in tail.stderr
    finally:
        if tail is not None:
            tail.kill()
        server.kill()


@pytest.mark.hard_timeout(40)
def test_state_file_resumes_a_new_process_exactly_after_the_last_printed_event(tmp_path):
    state = tmp_path / "tail.pos"
    server = ThreadServer(tmp_path / "data").start()
    try:
        write(server.url, 1, 4)
        first = TailProc(["*/pub/t/*", "--after", "0", "--state", str(state), "--url", server.url])
        first.wait_lines(4)
        assert first.interrupt() == 0
        printed_last = first.lines[-1].split(" ")[0]
        assert state.read_text().strip() == printed_last == event_id(4, USER)
        assert first.stderr.strip().endswith(f"last: {printed_last}")
        write(server.url, 5, 3)
        # --after 0 is ignored: the state file wins; --no-live prints the history after it and exits
        second = TailProc(["*/pub/t/*", "--after", "0", "--state", str(state), "--no-live", "--url", server.url])
        assert second.finish(15) == 0, second.stderr
        assert [line.split(" ")[0] for line in second.lines] == [event_id(s, USER) for s in (5, 6, 7)]
        assert state.read_text().strip() == event_id(7, USER)
    finally:
        server.stop()


def test_tail_text_lines_name_event_kind_key_and_size(tmp_path):
    server = ThreadServer(tmp_path / "data").start()
    try:
        with Client(server.url, KEY) as client:
            client.put("/pub/t/a.json", b'{"a":1}')
            client.delete("/pub/t/a.json")
        tail = TailProc(["*/pub/t/*", "--after", "0", "--no-live", "--inline", "--url", server.url])
        assert tail.finish(15) == 0, tail.stderr
        assert tail.lines == [f"{event_id(1, USER)} PUT pubky://{USER}/pub/t/a.json 7 bytes " + '"{\\"a\\":1}"',
                              f"{event_id(2, USER)} DEL pubky://{USER}/pub/t/a.json"]
    finally:
        server.stop()


def test_tail_prints_a_gap_as_such():
    # the gap frame is what the server sends when retention dropped the requested history (SPEC 3.3); it is
    # scripted here so the test does not depend on retention timing
    frames = [b"retry: 50\n\n", gap_frame(1, 6), event_frame(7), event_frame(8), end_frame("history", None)]
    with FakeSSE(lambda n, req: frames) as srv:
        text = TailProc(["*", "--after", "0", "--no-live", "--url", srv.url])
        assert text.finish(15) == 0, text.stderr
        as_json = TailProc(["*", "--after", "0", "--no-live", "--json", "--url", srv.url])
        assert as_json.finish(15) == 0, as_json.stderr
    assert text.lines[0] == "gap: events 1..6 were dropped by retention"
    assert text.lines[1:] == [f"{event_id(7, FAKE_USER)} PUT pubky://{FAKE_USER}/pub/a/7.json 2 bytes",
                              f"{event_id(8, FAKE_USER)} PUT pubky://{FAKE_USER}/pub/a/8.json 2 bytes"]
    assert json.loads(as_json.lines[0]) == {"gap": {"from": 1, "to": 6}}
    assert seqs(as_json.lines) == [7, 8]


def test_tail_prints_a_relays_upstream_gap_naming_the_upstream():
    from engine.client.stream import Gap
    from engine.commands.tail import format_gap

    assert format_gap(Gap(5, 9, "alice"), False) == "gap: upstream alice events 5..9 were lost before the relay " \
        "copied them"
    assert json.loads(format_gap(Gap(5, 9, "alice"), True)) == {"gap": {"upstream": "alice", "from": 5, "to": 9}}
    assert format_gap(Gap(5, 9), False) == "gap: events 5..9 were dropped by retention"


def test_tail_ctrl_c_before_any_event_exits_0(tmp_path):
    with FakeSSE(lambda n, req: [b": keep-alive\n\n"]) as srv:
        tail = TailProc(["*", "--url", srv.url])
        import time

        deadline = time.monotonic() + 10
        while not srv.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tail.interrupt() == 0
    assert tail.stderr.strip().endswith("last: none") and "Traceback" not in tail.stderr


def test_tail_prints_a_real_servers_retention_gap(tmp_path):
    # retention is applied by calling the log's own apply_retention on the server's loop (what the server's
    # retention settings drive); the events it drops must come out as one gap line, then the rest
    server = ThreadServer(tmp_path / "data", segment_bytes=64 * 1024).start()
    try:
        with Client(server.url, KEY) as client:
            for i in range(150):
                client.put(f"/pub/t/{i}", b"x" * 1000)
        first = server.call(lambda: server.app.log.apply_retention(max_bytes=1))["first_seq"]
        assert first > 1
        tail = TailProc(["*/pub/t/*", "--after", "0", "--no-live", "--url", server.url])
        assert tail.finish(15) == 0, tail.stderr
        assert tail.lines[0] == f"gap: events 1..{first - 1} were dropped by retention"
        assert [parse_resume_point(line.split(" ")[0]) for line in tail.lines[1:]] == list(range(first, 151))
    finally:
        server.stop()
