"""engine/bench/common.py and what every bench gets from it: tables with units and verdicts, progress only as a
terminal can show it, scratch folders that go away however a run ends, --help that shows defaults."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.bench.common import Figure, Progress, Scratch, human, pick, positive_float, positive_int, table

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TMPDIR=str(tmp_path))
    return env


# ---- figures, verdicts, tables


def test_a_figure_is_met_at_its_bound_and_not_met_past_it():
    assert Figure("rate", 250_000, "appends/s", ">=", 250_000).verdict == "met"
    assert Figure("rate", 249_999, "appends/s", ">=", 250_000).verdict == "NOT MET"
    assert Figure("lat", 20, "ms", "<=", 20).verdict == "met"
    assert Figure("lat", 20.01, "ms", "<=", 20).verdict == "NOT MET"


def test_a_figure_measured_at_another_size_is_not_judged_and_says_why():
    f = Figure("reopen", 0.1, "s", "<=", 2.0, judged=False, why="target is for 1,000,000 records: --full")
    assert f.verdict == "n/a (target is for 1,000,000 records: --full)"
    assert Figure("free", 3.0, "ms").verdict == "" and Figure("free", 3.0, "ms").target == ""
    assert Figure("lost", None, "events", "<=", 0).verdict == "n/a (not measured)"


def test_figure_rows_carry_units_and_the_json_form_the_verdict():
    f = Figure("replay", 1_234_567.8, "records/s", ">=", 1_000_000, note="CRC32C")
    assert f.row() == ["replay", "1,234,568 records/s", "≥ 1,000,000 records/s", "met", "CRC32C"]
    assert f.as_json() == {"value": 1_234_567.8, "unit": "records/s", "target": ">= 1000000", "verdict": "met"}


def test_human_numbers():
    assert [human(x) for x in (2_443_628, 1234.5, 12.345, 1.2345, 0.01234, 0)] == \
        ["2,443,628", "1,234", "12.3", "1.23", "0.0123", "0"]


def test_table_aligns_columns_under_a_rule_and_drops_empty_trailing_columns():
    text = table([["a", "1", ""], ["bbb", "22", ""]], ["name", "n", "note"])
    assert text.splitlines() == ["name  n", "----  --", "a     1", "bbb   22"]


def test_option_types_refuse_zero_and_words_and_pick_prefers_the_command_line():
    assert positive_int("1,000") == 1000
    for bad in ("0", "-3", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float("0")
    ns = argparse.Namespace(full=True, records=None, keys=7)
    assert pick(ns, "records", 1, 2) == 2 and pick(ns, "keys", 1, 2) == 7
    assert pick(argparse.Namespace(full=False, records=None), "records", 1, 2) == 1


# ---- progress


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_redraws_in_place_on_a_terminal():
    s = _Stream(True)
    p = Progress("bench x", stream=s)
    p.step("1/2")
    p.step("2/2")
    p.note("done")
    assert s.getvalue() == ("\rbench x: 1/2\x1b[K\rbench x: 2/2\x1b[K\rbench x: done\x1b[K\n")


def test_progress_elsewhere_is_plain_lines_without_escape_codes_and_rate_limited():
    s = _Stream(False)
    p = Progress("bench x", stream=s, every=3600)
    for i in range(100):
        p.step(f"{i}/100")  # quick work: no step is shown at all
    p.note("done")
    assert s.getvalue() == "bench x: done\n"
    s = _Stream(False)
    p = Progress("bench x", stream=s, every=0.05)
    p.step("early")
    time.sleep(0.06)
    p.step("1/3")
    p.step("2/3")  # within `every` of the last line: not shown
    p.note("done")
    assert s.getvalue() == "bench x: 1/3\nbench x: done\n"
    assert "\r" not in s.getvalue() and "\x1b" not in s.getvalue()


# ---- scratch folders


def test_scratch_is_removed_when_the_block_raises(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(RuntimeError):
        with Scratch("hs-test-") as scratch:
            Path(scratch.path, "f").write_bytes(b"x" * 1000)
            raise RuntimeError("boom")
    assert not Path(scratch.path).exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_scratch_is_removed_on_sigterm_and_sigint(tmp_path, sig):
    code = ("import sys, time\nfrom engine.bench.common import Scratch\n"
            "with Scratch('hs-test-') as s:\n    open(s.path + '/f', 'w').write('x')\n"
            "    print(s.path, flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    path = Path(proc.stdout.readline().strip())
    assert path.is_dir()
    proc.send_signal(sig)
    proc.wait(20)
    assert proc.returncode != 0 and not path.exists()


def test_a_bench_stopped_by_sigterm_removes_its_data(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "bench", "log", "--records", "50000000"],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("hs-bench-log-*")) or not any(tmp_path.glob("hs-bench-log-*/*")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "stopped; its servers and temporary data are gone" in err
    assert list(tmp_path.glob("hs-*")) == []


# ---- the benches themselves


def _bench_parsers():
    from engine.cli import build_parser

    parser = build_parser()
    bench = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "bench")[1]
    return bench._subparsers._group_actions[0].choices


def test_every_bench_help_shows_its_defaults_and_never_mentions_issues():
    parsers = _bench_parsers()
    assert set(parsers) >= {"log", "match", "http", "fanout", "sync"}
    for name, p in parsers.items():
        if name not in ("log", "match", "http", "fanout", "sync"):
            continue  # benches added beside these answer for their own help
        text = p.format_help()
        assert "issue" not in text.lower(), name
        for action in p._actions:
            if action.option_strings and action.nargs != 0 and action.dest not in ("help",):
                assert "default" in (action.help or ""), (name, action.option_strings)


def test_bench_fanout_has_no_url_option_that_it_would_ignore():
    assert "--url" not in _bench_parsers()["fanout"].format_help()


def test_bench_log_prints_a_table_with_units_and_verdicts_and_leaves_nothing_behind(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "log", "--records", "3000", "--keys", "300"],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("bench log: 3,000 records of 100 bytes")
    assert lines[1].split() == ["figure", "measured", "target", "verdict", "note"]
    text = out.stdout
    assert "appends/s" in text and "records/s" in text and "bytes/key" in text and "{" not in text
    assert "n/a (target is for 1,000,000 records: --full)" in text  # reopen is not judged at this size
    assert "n/a (fixed costs dominate under 20,000 keys)" in text  # nor memory per key
    assert "targets:" in text and "of 2 met" in text
    assert list(tmp_path.glob("hs-*")) == []


def test_bench_log_replay_figure_reads_every_byte(tmp_path):
    import json

    out = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "log", "--records", "3000", "--keys", "300",
                          "--json"], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["replay_raw_records"] == 3000
    # every byte read (CRC32C): the rate is bounded by memory bandwidth, nowhere near the 1e9 records/s that
    # handing out slices alone gave
    assert r["replay_raw_mib_per_second"] < 100_000
    assert r["figures"]["key index memory"]["unit"] == "bytes/key"


def test_bench_sync_small_run_judges_round_trips_and_upload(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "sync", "--items", "2000", "--trials", "2",
                          "--d", "1,10", "--bloom-trials", "1"], env=_env(tmp_path), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "d=10: upload (worst trial)" in out.stdout and "% of trials" in out.stdout
    assert "targets: 6 of 6 met" in out.stdout


def test_bench_match_small_run(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "match", "--patterns", "2000", "--small",
                          "100", "--events", "300", "--sketch-keys", "5000", "--differences", "20"],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "µs/event" in out.stdout and "match time ratio large / small" in out.stdout
    assert "n/a (target is for 1,000 vs 1,000,000: --full)" in out.stdout


# ---- the plot


def test_fanout_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from engine.bench.plot import fanout_plot

    path = tmp_path / "f.png"
    fanout_plot(str(path), {"homestream": {"latency_ms": {"p50": 4.0, "p99": 9.0, "max": 20.0},
                                           "cpu_s_per_million": {"burst": 0.4, "steady": 5.0}},
                            "nchan": {"latency_ms": {"p50": 3.0, "p99": 12.0}, "cpu_s_per_million": {"burst": 1.0}}},
                "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_without_matplotlib_the_plot_option_says_what_to_install(monkeypatch):
    from engine.bench.plot import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert "pip install" in require_matplotlib()
    from engine.cli import main

    assert main(["bench", "fanout", "--plot", "x.png"]) == 2


def test_compare_plot_series_takes_each_target_that_ran():
    from loadtest.compare import plot_series

    results = {"targets": {
        "homestream": {"burst": {"server_cpu_s_per_million": 0.4},
                       "steady": {"latency_ms_p50": 5.0, "latency_ms_p99": 9.0, "latency_ms_p90": float("nan"),
                                  "server_cpu_s_per_million": 5.5}},
        "nchan": {"skipped": "not installed"},
        "redis": {"burst": {"error": "did not start"}}}}
    assert plot_series(results) == {"homestream": {"latency_ms": {"p50": 5.0, "p99": 9.0},
                                                   "cpu_s_per_million": {"burst": 0.4, "steady": 5.5}}}
