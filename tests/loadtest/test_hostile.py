"""The hostile-client memory test (loadtest/hostile.py, issue 21): a default server under pipelined GETs that are
never read, unfinished and trickled bodies, and client-sized /get and /bloom requests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def run_hostile(tmp_path, *args: str, timeout: float = 180) -> tuple[int, dict]:
    out = tmp_path / "hostile.json"
    proc = subprocess.run([sys.executable, "-m", "loadtest.hostile", "--json", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode, json.loads(out.read_text())


def answers(result: dict, mix: str) -> dict[str, int]:
    return result["tally"][mix]["answers"]


def test_pipelined_gets_and_hostile_bodies_for_3_s_stay_bounded(tmp_path):
    """Mixes 1 and 2 (this branch's fixes) for 3 s: RSS under 300 MiB. /healthz is held to 500 ms here, not 100:
    this runs inside the default suite on a shared 2-core machine; the 30 s run below holds it to 100 ms."""
    code, result = run_hostile(tmp_path, "--duration", "3", "--mixes", "1,2", "--healthz-limit-ms", "500")
    assert code == 0, result
    assert result["max_rss_mib"] < 300 and result["max_healthz_ms"] < 500 and result["healthz_not_200"] == 0
    assert result["rss_samples"] >= 20 and result["healthz_samples"] >= 20  # sampled every ~100 ms
    assert result["tally"]["1 pipelined GET 8 MiB"]["sent"] >= 400 * 8
    # 20 declared 8 MiB bodies against a 64 MiB budget: 8 are let in, the others are refused with 503
    assert answers(result, "2 unfinished 8 MiB body").get("503", 0) >= 12
    assert result["tally"]["2 trickled body"]["sent"] >= 40


def test_every_mix_runs_and_the_script_stops_its_server(tmp_path):
    """All three mixes for 3 s: every client ran and the figures were written; the bounds themselves are the
    30 s test's (mix 4 depends on the /get and /bloom limits of issue 21 item 4)."""
    code, result = run_hostile(tmp_path, "--duration", "3")
    assert code in (0, 1), result  # 2 would be the run itself failing: no server, a setup error
    assert result["error"] is None and not result["server_died"]
    assert result["mixes"] == ["1", "2", "4"]
    for mix in ("1 pipelined GET 8 MiB", "2 unfinished 8 MiB body", "2 trickled body", "2 unfinished chunked body",
                "4 POST /get repeated storage x800", "4 POST /get 801 storages", "4 GET /bloom count=200000000",
                "4 GET /bloom count=1e400"):
        assert result["tally"][mix]["sent"] > 0, mix
    assert result["rss_samples"] > 0 and result["max_rss_mib"] > result["baseline_rss_mib"] > 0


@pytest.mark.slow
def test_the_hostile_mixes_for_30_s_keep_rss_under_300_mib_and_healthz_under_100_ms(tmp_path):
    code, result = run_hostile(tmp_path, "--duration", "30", timeout=300)
    assert code == 0, json.dumps(result, indent=1)
    assert result["max_rss_mib"] < 300 and result["max_healthz_ms"] < 100
