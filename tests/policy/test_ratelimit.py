"""Token buckets (engine/policy/ratelimit.py): every edge on an exact, injected clock."""

import pytest

from engine.policy.ratelimit import NS, RateLimiter, StreamCounter


class Clock:
    def __init__(self) -> None:
        self.t = 1_000 * NS

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += round(seconds * NS)


def test_a_full_bucket_passes_exactly_burst_requests_then_the_exactly_empty_bucket_refuses():
    clock = Clock()
    rl = RateLimiter(5, clock=clock)
    assert [rl.take("a") for _ in range(5)] == [0] * 5
    assert rl.take("a") == 1  # exactly empty: refused, retry in at least a second
    assert rl.take("b") == 0  # another key has its own bucket


def test_the_bucket_refills_at_the_rate_one_token_at_a_time():
    clock = Clock()
    rl = RateLimiter(10, clock=clock)
    for _ in range(10):
        assert rl.take("a") == 0
    clock.advance(0.1 - 1e-9)
    assert rl.take("a") > 0  # one nanosecond short of a token
    clock.advance(1e-9)
    assert rl.take("a") == 0
    assert rl.take("a") > 0


def test_a_refusal_charges_nothing():
    clock = Clock()
    rl = RateLimiter(2, clock=clock)
    rl.take("a"), rl.take("a")
    for _ in range(100):
        assert rl.take("a") > 0
    clock.advance(0.5)
    assert rl.take("a") == 0


def test_retry_after_is_whole_seconds_at_least_one():
    clock = Clock()
    slow = RateLimiter(0.25, clock=clock)  # one request per 4 s, burst 1
    assert slow.take("a") == 0
    assert slow.take("a") == 4
    clock.advance(3.5)
    assert slow.take("a") == 1  # 0.5 s left: rounded up, never 0
    clock.advance(0.5)
    assert slow.take("a") == 0


def test_idle_buckets_are_dropped_so_memory_is_bounded_and_answers_do_not_change():
    clock = Clock()
    rl = RateLimiter(3, clock=clock)
    for i in range(1000):
        rl.take(f"ip{i}")
    assert len(rl) == 1000
    clock.advance(1.0)
    rl.take("x")
    clock.advance(1.0)
    rl.take("x")
    assert len(rl) == 1  # the thousand idle keys are gone
    # a dropped bucket was full: a returning key gets its whole burst, as it would have anyway
    assert [rl.take("ip1") for _ in range(4)] == [0, 0, 0, 1]


def test_a_flood_of_new_keys_rotates_early_at_the_cap():
    clock = Clock()
    rl = RateLimiter(1, clock=clock, max_keys=100)
    for i in range(10_000):
        rl.take(i)
    assert len(rl) <= 200


def test_zero_or_negative_rate_is_refused():
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_stream_counter_limits_and_forgets():
    c = StreamCounter(2)
    assert not c.full("a")
    c.opened("a"), c.opened("a")
    assert c.full("a") and not c.full("b")
    c.closed("a")
    assert not c.full("a") and c.count("a") == 1
    c.closed("a")
    assert len(c) == 0
