"""Tests of the backoff arithmetic: bounds, growth, Retry-After, validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crwatch import Backoff, InvalidOptionError

_uniform = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(st.integers(min_value=0, max_value=10_000), _uniform)
def test_default_delay_stays_within_full_jitter_bounds(attempt: int, uniform: float) -> None:
    """Every delay is within [0, min(30, 0.8 * 2**attempt)]."""
    backoff = Backoff()
    delay = backoff.delay(attempt, uniform)
    assert 0.0 <= delay <= min(30.0, 0.8 * 2.0 ** min(attempt, 64))


@given(st.integers(min_value=0, max_value=200))
def test_cap_grows_monotonically_to_the_maximum(attempt: int) -> None:
    """The cap never shrinks as failures accumulate, and reaches the maximum."""
    backoff = Backoff(initial=0.8, maximum=30.0)
    assert backoff.cap(attempt) <= backoff.cap(attempt + 1) <= 30.0
    assert backoff.cap(100) == 30.0
    assert backoff.cap(0) == 0.8


def test_full_jitter_scales_the_cap() -> None:
    """The uniform value picks a point between 0 and the cap."""
    backoff = Backoff(initial=1.0, maximum=8.0)
    assert backoff.delay(2, 0.5) == 2.0
    assert backoff.delay(3, 0.0) == 0.0
    assert backoff.delay(10, 0.999) == pytest.approx(8.0 * 0.999)


@given(st.floats(min_value=0, max_value=10_000), _uniform)
def test_retry_after_replaces_the_delay_up_to_its_cap(retry_after: float, uniform: float) -> None:
    """Retry-After is honoured as given, up to max_retry_after."""
    backoff = Backoff(max_retry_after=120.0)
    assert backoff.delay(0, uniform, retry_after) == min(retry_after, 120.0)


def test_slowest_pace_is_near_the_maximum() -> None:
    """Hopeless retries (403 with the retry policy) wait between half and all of the maximum."""
    backoff = Backoff(maximum=10.0)
    assert backoff.slowest(0.0) == 5.0
    assert backoff.slowest(0.999) <= 10.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": -1},
        {"maximum": float("inf")},
        {"multiplier": 0.5},
        {"initial": 5, "maximum": 1},
        {"max_retry_after": 0},
    ],
)
def test_invalid_values_raise_at_construction(kwargs: dict[str, float]) -> None:
    """Bad numbers are rejected when the Backoff is built, as InvalidOptionError."""
    with pytest.raises(InvalidOptionError):
        Backoff(**kwargs)
