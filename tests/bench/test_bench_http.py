"""engine/bench/http.py: the sums and ratios it reports, and one short real run against two servers."""

import json
import subprocess
import sys

from engine.bench.http import PhaseTally, ratios


def _round(requests, wall, latency, status=200):
    return {"requests": requests, "wall": wall, "latencies": [latency] * requests, "statuses": {status: requests},
            "client_cpu_s": 0.5}


def test_phase_tally_sums_rounds_and_keeps_each_rounds_rate():
    tally = PhaseTally()
    tally.add(_round(100, 1.0, 0.001), 0.9, {"loop:1": 0.9, "committer:2": 0.02}, {})
    tally.add(_round(300, 1.0, 0.003), 1.0, {"loop:1": 1.0, "committer:2": 0.04},
              {"read_cache_hits": 5, "read_cache_misses": 7})
    out = tally.summary()
    assert out["requests"] == 400 and out["req_per_s"] == 200 and out["rounds_req_per_s"] == [100, 300]
    assert out["p50_ms"] == 3.0 and out["p99_ms"] == 3.0 and out["statuses"] == {200: 400}
    assert out["server_cpu_s"] == 1.9 and out["client_cpu_s"] == 1.0
    assert out["server_thread_cpu_s"] == {"loop:1": 1.9, "committer:2": 0.06}  # summed before the 0.05 cut
    assert (out["read_cache_hits"], out["read_cache_misses"]) == (5, 7)


def test_phase_tally_without_cache_counts_reports_none():
    tally = PhaseTally()
    tally.add(_round(10, 1.0, 0.001, 204), 1.0, {}, {})
    assert "read_cache_hits" not in tally.summary()


def test_ratios_summed_and_round_by_round():
    def server(put, get, hot):
        return {phase: {"req_per_s": sum(r) // len(r), "rounds_req_per_s": r}
                for phase, r in (("put", put), ("get", get), ("get_hot", hot))}

    results = {"homestream": server([50, 70], [80, 100], [100, 120]),
               "bare-h11": server([100, 100], [100, 100], [100, 100])}
    whole, by_round = ratios(results)
    assert whole == {"put_vs_bare": 0.6, "get_vs_bare": 0.9, "get_hot_vs_bare": 1.1}
    assert by_round["put_vs_bare"] == [0.5, 0.7] and by_round["get_hot_vs_bare"] == [1.0, 1.2]


def test_bench_http_short_run_reports_every_phase_for_both_servers():
    out = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "http", "--json", "--seconds", "0.4",
                          "--rounds", "2", "--servers", "homestream,bare-h11", "--connections", "8"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    for name, ok in (("homestream", {"put": "201", "get": "200", "get_hot": "200"}),
                     ("bare-h11", {"put": "204", "get": "204", "get_hot": "204"})):
        for phase, status in ok.items():
            summary = results[name][phase]
            assert summary["requests"] > 0 and set(summary["statuses"]) == {status}, (name, phase, summary)
            assert len(summary["rounds_req_per_s"]) == 2
    assert results["homestream"]["get_hot"]["read_cache_hits"] > 0
    assert set(results["ratios"]) == {"put_vs_bare", "get_vs_bare", "get_hot_vs_bare"}
