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


def test_cap_doubles_from_the_first_failure() -> None:
    """The cap is exact at each attempt: 0.8, 1.6, 3.2, ... up to 30 (client-go's numbers).

    Regression (a surviving mutation): ``cap(1)`` returning the initial value passed every
    bound-only check.
    """
    backoff = Backoff()
    assert [backoff.cap(n) for n in range(7)] == pytest.approx(
        [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0]
    )
    assert backoff.cap(-3) == 0.8
    assert Backoff(initial=1.0, maximum=8.0).cap(3) == 8.0
    assert Backoff(initial=1.0, maximum=8.0).cap(2) == 4.0
    assert Backoff(initial=2.0, maximum=100.0, multiplier=3.0).cap(1) == 6.0
    assert Backoff(initial=2.0, maximum=100.0, multiplier=1.0).cap(50) == 2.0
    assert Backoff().cap(10**9) == 30.0
    assert Backoff().delay(1, 0.5) == pytest.approx(0.8)
    assert Backoff().delay(6, 1.5) == 30.0  # uniform clamped to 1
    assert Backoff().delay(5, -1.0) == 0.0
    assert Backoff().delay(0, 0.5, -1.0) == 0.4  # a negative Retry-After is ignored
    assert Backoff().delay(0, 0.5, 0.0) == 0.0


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


def test_errors_name_the_field_and_the_value() -> None:
    """A rejected value is named with its field, so the message points at the fix."""
    with pytest.raises(InvalidOptionError) as info:
        Backoff(initial=-2)
    assert str(info.value) == "Backoff.initial must be a positive number, got -2"
    with pytest.raises(InvalidOptionError) as info:
        Backoff(max_retry_after=0)
    assert str(info.value) == "Backoff.max_retry_after must be a positive number, got 0"
    with pytest.raises(InvalidOptionError) as info:
        Backoff(multiplier=0.5)
    assert str(info.value) == "Backoff.multiplier must be >= 1, got 0.5"
    with pytest.raises(InvalidOptionError) as info:
        Backoff(initial=5, maximum=1)
    assert str(info.value) == "Backoff.maximum (1) must be >= initial (5)"


def test_a_constant_backoff_is_allowed() -> None:
    """Maximum equal to initial is a constant cap, not an error."""
    backoff = Backoff(initial=2.0, maximum=2.0)
    assert [backoff.cap(n) for n in range(4)] == [2.0, 2.0, 2.0, 2.0]


def test_slowest_pace_spans_half_to_all_of_the_maximum() -> None:
    """The slowest pace is linear in the uniform value, clamped to [maximum / 2, maximum]."""
    backoff = Backoff(maximum=8.0)
    assert backoff.slowest(0.5) == 6.0
    assert backoff.slowest(2.0) == 8.0
    assert backoff.slowest(-1.0) == 4.0
