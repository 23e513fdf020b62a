"""Load tests leave the repository clean: by default every output goes to loadtest/results/runs/, which git
ignores, while the committed examples beside it stay tracked."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "loadtest" / "results" / "runs"


def _ignored(path: Path) -> bool:
    out = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, capture_output=True)
    return out.returncode == 0


def test_compare_and_soak_write_into_the_ignored_runs_folder_by_default():
    from loadtest import compare, soak

    assert Path(compare.parse_args([]).out) == RUNS
    assert Path(soak.parse_args([]).out) == RUNS


def test_locust_conf_writes_its_csvs_into_the_ignored_runs_folder():
    text = (ROOT / "loadtest" / "locust.conf").read_text()
    conf = configparser.ConfigParser()
    conf.read_string("[locust]\n" + text)
    prefix = ROOT / conf["locust"]["csv"]
    assert prefix.parent == RUNS and RUNS.is_dir()  # the folder exists in a fresh clone: locust does not make it


def test_the_runs_folder_is_ignored_and_the_examples_are_not():
    if not (ROOT / ".git").exists():
        return  # an installed copy has no git metadata to check
    assert _ignored(RUNS / "compare-20990101-000000.json") and _ignored(RUNS / "locust_stats.csv")
    assert _ignored(RUNS / "soak-rss.png")
    assert not _ignored(ROOT / "loadtest" / "results" / "compare-quick.png")
    assert not _ignored(RUNS / ".gitignore")
