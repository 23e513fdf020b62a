"""The soak test for about a minute (loadtest/soak.py): no loss, no duplicate, gaps accounted for, log checked."""

import pytest

from loadtest import soak


@pytest.mark.slow
def test_soak_one_minute(tmp_path):
    # small retention so that gaps (away subscribers, stalled ones) happen inside one minute
    code = soak.main(["--minutes", "1", "--retention-bytes", str(1 << 20), "--subscribers", "12", "--stalled", "2",
                      "--out", str(tmp_path), "--no-plots"])
    assert code == 0
