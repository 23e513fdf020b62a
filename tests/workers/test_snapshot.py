"""/metrics of several processes (engine/workers/snapshot.py): sums under one process's names, max for the
shared log's gauges, and the labelled form."""

from __future__ import annotations

from engine.metrics import Metrics
from engine.workers.snapshot import merge, merge_labelled


def render(connections: int, status_200: int, last_seq: int) -> bytes:
    m = Metrics()
    m.connections_total = connections
    m.responses[200] = status_200
    m.gauge("homestream_log_last_seq", "newest seq in the log", lambda: last_seq)
    return m.render()


def test_merge_sums_counters_and_takes_the_highest_shared_log_gauge():
    text = merge({"0": render(3, 10, 41), "1": render(4, 5, 42), "writer": render(0, 0, 42)}).decode()
    assert "homestream_connections_total 7\n" in text
    assert 'homestream_http_responses_total{status="200"} 15\n' in text
    assert "homestream_log_last_seq 42\n" in text
    assert text.count("# HELP homestream_connections_total ") == 1
    assert text.count("# TYPE homestream_log_last_seq ") == 1


def test_merge_labelled_keeps_every_process_apart_and_each_family_together():
    text = merge_labelled({"1": render(4, 5, 42), "0": render(3, 10, 41)}).decode()
    lines = text.splitlines()
    assert 'homestream_connections_total{worker="0"} 3' in lines
    assert 'homestream_http_responses_total{status="200",worker="1"} 5' in lines
    i = lines.index('homestream_connections_total{worker="0"} 3')
    assert lines[i + 1] == 'homestream_connections_total{worker="1"} 4'  # one family's samples are contiguous
