"""The quota rule (engine/policy/quota.py) at its edges."""

import pytest

from engine.errors import QuotaExceeded
from engine.policy.quota import Quota, exceeds


def test_exactly_at_the_limit_passes_one_byte_past_is_refused():
    assert not exceeds(100, 60, 0, 40)
    assert exceeds(100, 60, 0, 41)


def test_an_overwrite_that_does_not_grow_always_passes_even_over_a_lowered_limit():
    assert not exceeds(100, 500, 50, 50)
    assert not exceeds(100, 500, 50, 10)
    assert exceeds(100, 500, 50, 51)


def test_an_overwrite_is_charged_only_its_growth():
    assert not exceeds(100, 100, 40, 40)
    assert not exceeds(100, 90, 40, 50)
    assert exceeds(100, 90, 40, 51)


def test_zero_is_off():
    assert not exceeds(0, 10**12, 0, 10**9)


def test_the_guard_raises_507_quota_exceeded():
    with pytest.raises(QuotaExceeded) as info:
        Quota(10)("u", 5, 0, 6)
    assert info.value.status == 507 and info.value.code == "quota_exceeded"
    Quota(10)("u", 5, 0, 5)
