"""Rate limiters for :class:`crwatch.WorkQueue`: how long a key waits before it is retried.

A rate limiter answers one question, ``when(key)``: "this key failed again, how many seconds
until it may be handed out?". :meth:`forget` resets a key (it succeeded) and :meth:`retries`
says how many failures in a row it has had. Three limiters and their combination, with
client-go's defaults (``workqueue.DefaultTypedControllerRateLimiter``,
https://github.com/kubernetes/client-go/blob/master/util/workqueue/default_rate_limiters.go):

- :class:`ExponentialRateLimiter`: per key, ``base * 2**failures`` capped at ``maximum``
  (5 ms doubling to 1000 s);
- :class:`BucketRateLimiter`: for all keys together, a token bucket (10 per second, burst
  100): a storm of failures cannot retry faster than that overall;
- :class:`MaxOfRateLimiter`: the longest wait of several limiters; the default
  (:func:`default_rate_limiter`) is the maximum of the two above.

The arithmetic is pure: the only input besides the key is the clock of the token bucket.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Protocol, runtime_checkable

from ._clock import Clock, validate_clock
from ._exceptions import InvalidOptionError

__all__ = [
    "BucketRateLimiter",
    "ExponentialRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "default_rate_limiter",
]


@runtime_checkable
class RateLimiter(Protocol):
    """What a :class:`crwatch.WorkQueue` needs from a rate limiter.

    Implement these three methods to write your own; they are called from the event
    loop's thread only, so no locking is needed.
    """

    def when(self, key: Hashable) -> float:
        """Record one more failure of ``key``; return the seconds it must wait (>= 0)."""
        ...

    def forget(self, key: Hashable) -> None:
        """Forget ``key``'s failures (it succeeded): its next wait starts from the start."""
        ...

    def retries(self, key: Hashable) -> int:
        """Return how many times ``key`` failed since it was last forgotten."""
        ...


def _positive(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidOptionError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class ExponentialRateLimiter:
    """Per-key exponential backoff: ``base * 2**n`` seconds after the n-th failure in a row.

    The first failure waits ``base``, the next twice that, up to ``maximum``; :meth:`forget`
    starts the key over. client-go's ``ItemExponentialFailureRateLimiter`` with its
    controller defaults (5 ms to 1000 s). No jitter: the overall token bucket of
    :func:`default_rate_limiter` spreads storms instead.

    Args:
        base: the first wait, in seconds. Default 0.005.
        maximum: the longest wait, in seconds. Default 1000.

    Raises:
        InvalidOptionError: a value is not positive, or ``maximum`` is below ``base``.
    """

    __slots__ = ("_failures", "base", "maximum")

    def __init__(self, *, base: float = 0.005, maximum: float = 1000.0) -> None:
        self.base: float = _positive("base", base)
        self.maximum: float = _positive("maximum", maximum)
        if self.maximum < self.base:
            raise InvalidOptionError(f"maximum ({maximum}) must be >= base ({base})")
        self._failures: dict[Hashable, int] = {}

    def __repr__(self) -> str:
        return (
            f"<crwatch.ExponentialRateLimiter base={self.base:g} maximum={self.maximum:g} "
            f"keys={len(self._failures)}>"
        )

    def delay(self, failures: int) -> float:
        """Return the wait after ``failures`` earlier failures in a row (0 for the first)."""
        # Compare exponents, not values: 2**failures overflows a float after ~1024 failures.
        if failures * math.log(2) >= math.log(self.maximum / self.base):
            return self.maximum
        return min(self.maximum, self.base * 2.0**failures)

    def when(self, key: Hashable) -> float:
        """Count one more failure of ``key``; return ``base * 2**(failures before)``, capped."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return self.delay(failures)

    def forget(self, key: Hashable) -> None:
        """Start ``key`` over: its next failure waits ``base``."""
        self._failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        """Return ``key``'s failures since it was last forgotten."""
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """One token bucket for every key: at most ``rate`` retries per second after a burst.

    The bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each
    :meth:`when` takes a token, going into debt when none is left, and returns how long
    until its token exists (golang.org/x/time/rate's ``Reserve().Delay()``, which
    client-go's ``BucketRateLimiter`` uses). Keys are not told apart: :meth:`forget` does
    nothing and :meth:`retries` is always 0.

    Args:
        rate: tokens per second. Default 10.
        burst: the bucket's size (and its content at the start). Default 100.
        clock: where time comes from. Default ``None``: the event loop's clock.

    Raises:
        InvalidOptionError: ``rate`` is not positive, ``burst`` is not an int >= 1, or
            ``clock`` is no :class:`crwatch.Clock`.
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(self, *, rate: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        self.rate: float = _positive("rate", rate)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise InvalidOptionError(f"burst must be an int >= 1, got {burst!r}")
        self.burst: int = burst
        self._clock = validate_clock(clock)
        self._tokens = float(burst)
        self._stamp: float | None = None  # when _tokens was last brought up to date

    def __repr__(self) -> str:
        return f"<crwatch.BucketRateLimiter rate={self.rate:g}/s burst={self.burst}>"

    def when(self, key: Hashable) -> float:
        """Take a token; return the seconds until it exists (0 while the bucket has some)."""
        now = self._clock.now()
        if self._stamp is None:
            self._stamp = now
        elif now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def forget(self, key: Hashable) -> None:
        """Do nothing: the bucket is shared by every key."""

    def retries(self, key: Hashable) -> int:
        """Return 0: the bucket counts no key's failures."""
        return 0


class MaxOfRateLimiter:
    """The longest wait any of several limiters asks for; each of them counts every failure.

    Args:
        *limiters: at least one :class:`crwatch.RateLimiter`.

    Raises:
        InvalidOptionError: no limiter, or one that is not a rate limiter.
    """

    __slots__ = ("limiters",)

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise InvalidOptionError("MaxOfRateLimiter needs at least one rate limiter")
        for limiter in limiters:
            if not isinstance(limiter, RateLimiter):
                raise InvalidOptionError(
                    f"expected rate limiters (when, forget, retries), got {limiter!r}"
                )
        self.limiters: tuple[RateLimiter, ...] = limiters

    def __repr__(self) -> str:
        return f"<crwatch.MaxOfRateLimiter {', '.join(map(repr, self.limiters))}>"

    def when(self, key: Hashable) -> float:
        """Ask every limiter (so each counts the failure); return the longest wait."""
        return max([limiter.when(key) for limiter in self.limiters])

    def forget(self, key: Hashable) -> None:
        """Forget ``key`` in every limiter."""
        for limiter in self.limiters:
            limiter.forget(key)

    def retries(self, key: Hashable) -> int:
        """Return the largest count of ``key``'s failures among the limiters."""
        return max(limiter.retries(key) for limiter in self.limiters)


def default_rate_limiter(*, clock: Clock | None = None) -> MaxOfRateLimiter:
    """Return client-go's controller default: per-key 5 ms to 1000 s, overall 10/s burst 100.

    Args:
        clock: the token bucket's clock. Default ``None``: the event loop's clock.
    """
    return MaxOfRateLimiter(
        ExponentialRateLimiter(base=0.005, maximum=1000.0),
        BucketRateLimiter(rate=10.0, burst=100, clock=clock),
    )
