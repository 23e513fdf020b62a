"""--workers: a whole number from 1 to 1024 or `auto` (the usable cores)."""

from __future__ import annotations

import os

import pytest

from engine.config import Settings
from engine.log.cursor import SUPERVISOR_SLOTS, SharedCursor
from engine.workers.supervisor import worker_count


@pytest.mark.parametrize("value", ["1", "2", "1024", "auto"])
def test_workers_accepts_counts_and_auto(value):
    assert Settings.load(env={"HOMESTREAM_WORKERS": value}).workers == value


@pytest.mark.parametrize("value", ["0", "1025", "-1", "two", "", "1.5"])
def test_workers_refuses_anything_else(value):
    with pytest.raises(ValueError):
        Settings.load(env={}, overrides={"workers": value})


def test_auto_is_the_usable_cores():
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    assert worker_count("3") == 3


def test_the_cursor_publishes_a_consistent_snapshot_and_the_supervisor_counters(tmp_path):
    cur = SharedCursor.create(str(tmp_path / "cursor"))
    reader = SharedCursor.attach(str(tmp_path / "cursor"))
    try:
        cur.publish(10, 3, epoch=1, generation=2, writer_pid=1234)
        assert tuple(reader.read()) == (10, 3, 1, 2, 1234)
        cur.publish(11, 4)  # epoch, generation and pid kept
        assert tuple(reader.read()) == (11, 4, 1, 2, 1234)
        assert reader.durable_seq() == 11
        cur.set_counter(SUPERVISOR_SLOTS - 1, 5)
        assert reader.counter(SUPERVISOR_SLOTS - 1) == 5
        with pytest.raises(IndexError):
            cur.set_counter(SUPERVISOR_SLOTS, 1)
    finally:
        reader.close()
        cur.close()
