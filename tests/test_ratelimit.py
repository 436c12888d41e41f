"""Rate limiters: client-go's arithmetic, checked with hypothesis."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch

keys = st.sampled_from(["a", "b", "c", "ns/d"])


@given(st.lists(st.tuples(keys, st.booleans()), max_size=60))
def test_exponential_doubles_per_key_from_base_to_maximum(ops: list[tuple[str, bool]]) -> None:
    """The n-th failure in a row of a key waits base * 2**n (capped); forget starts over."""
    limiter = crwatch.ExponentialRateLimiter(base=0.005, maximum=1000.0)
    failures: dict[str, int] = {}
    for key, forget in ops:
        if forget:
            limiter.forget(key)
            failures.pop(key, None)
            assert limiter.retries(key) == 0
            continue
        n = failures.get(key, 0)
        assert limiter.when(key) == min(1000.0, 0.005 * 2**n)
        failures[key] = n + 1
        assert limiter.retries(key) == n + 1


def test_exponential_defaults_are_client_gos() -> None:
    """Defaults: 5 ms, 10 ms, 20 ms ... and 1000 s from the 19th failure (5 ms * 2**18 > 1000 s)."""
    limiter = crwatch.ExponentialRateLimiter()
    delays = [limiter.when("k") for _ in range(20)]
    assert delays[:3] == [0.005, 0.01, 0.02]
    assert delays[17] == 0.005 * 2**17
    assert delays[18:] == [1000.0, 1000.0]


@given(st.integers(min_value=0, max_value=10**9))
def test_exponential_never_overflows(failures: int) -> None:
    """Any failure count gives a finite delay within [base, maximum] (no float overflow)."""
    limiter = crwatch.ExponentialRateLimiter(base=0.5, maximum=60.0)
    delay = limiter.delay(failures)
    assert math.isfinite(delay)
    assert 0.5 <= delay <= 60.0


@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_bucket_never_exceeds_rate_plus_burst(rate: float, burst: int, gaps: list[float]) -> None:
    """No window of W seconds holds more than burst + rate * W calls' scheduled times.

    Whatever the times of the calls; and the first ``burst`` calls wait nothing.
    """
    clock = crwatch.ManualClock()
    limiter = crwatch.BucketRateLimiter(rate=rate, burst=burst, clock=clock)
    scheduled = []
    for i, gap in enumerate(gaps):
        clock.advance(gap)
        delay = limiter.when("any")
        assert delay >= 0
        if i < burst:
            assert delay == 0
        scheduled.append(clock.now() + delay)
    # Tokens are handed out in call order.
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(scheduled))
    for i, start in enumerate(scheduled):
        for j in range(i, len(scheduled)):
            window = scheduled[j] - start
            assert j - i + 1 <= burst + rate * window + 1e-6


def test_bucket_defaults_ten_per_second_after_a_burst_of_100() -> None:
    """client-go's default bucket: 100 at once, then one every 100 ms; keys are not told apart."""
    clock = crwatch.ManualClock()
    limiter = crwatch.BucketRateLimiter(clock=clock)
    assert [limiter.when(i) for i in range(100)] == [0.0] * 100
    assert limiter.when("x") == pytest.approx(0.1)
    assert limiter.when("y") == pytest.approx(0.2)
    limiter.forget("x")
    assert limiter.retries("x") == 0
    clock.advance(10)  # refills fully
    assert limiter.when("z") == 0.0


@given(st.lists(keys, max_size=150))
def test_max_of_is_the_longest_wait_of_each(calls: list[str]) -> None:
    """MaxOfRateLimiter returns the larger of its limiters' delays, each asked every time."""
    clock = crwatch.ManualClock()
    combined = crwatch.MaxOfRateLimiter(
        crwatch.ExponentialRateLimiter(base=0.01, maximum=5.0),
        crwatch.BucketRateLimiter(rate=2.0, burst=3, clock=clock),
    )
    exp = crwatch.ExponentialRateLimiter(base=0.01, maximum=5.0)
    bucket = crwatch.BucketRateLimiter(rate=2.0, burst=3, clock=clock)
    for key in calls:
        assert combined.when(key) == max(exp.when(key), bucket.when(key))
        assert combined.retries(key) == exp.retries(key)
    for key in set(calls):
        combined.forget(key)
        assert combined.retries(key) == 0


def test_default_rate_limiter_is_max_of_exponential_and_bucket() -> None:
    """The default: per key 5 ms doubling, and the shared bucket of 10/s burst 100."""
    limiter = crwatch.default_rate_limiter(clock=crwatch.ManualClock())
    assert [limiter.when("k") for _ in range(3)] == [0.005, 0.01, 0.02]
    assert limiter.retries("k") == 3
    exp, bucket = limiter.limiters
    assert isinstance(exp, crwatch.ExponentialRateLimiter)
    assert (exp.base, exp.maximum) == (0.005, 1000.0)
    assert isinstance(bucket, crwatch.BucketRateLimiter)
    assert (bucket.rate, bucket.burst) == (10.0, 100)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: crwatch.ExponentialRateLimiter(base=0), "base must be a positive"),
        (lambda: crwatch.ExponentialRateLimiter(base=2, maximum=1), "maximum"),
        (lambda: crwatch.BucketRateLimiter(rate=-1), "rate must be a positive"),
        (lambda: crwatch.BucketRateLimiter(burst=0), "burst must be an int"),
        (lambda: crwatch.MaxOfRateLimiter(), "at least one"),
        (lambda: crwatch.MaxOfRateLimiter(object()), "expected rate limiters"),  # type: ignore[arg-type]
    ],
)
def test_bad_options_raise_invalid_option_error(make: object, message: str) -> None:
    """Bad limiter options are refused at construction with InvalidOptionError."""
    with pytest.raises(crwatch.InvalidOptionError, match=message):
        make()  # type: ignore[operator]
