"""Backoff arithmetic, pure: exponential growth with full jitter, and Retry-After.

No clock and no global randomness: the caller passes the attempt number and a uniform value
in ``[0, 1)``, so the same inputs always give the same delay.
"""

from __future__ import annotations

import math

from attrs import field, frozen

from ._exceptions import InvalidOptionError

__all__ = ["Backoff"]


def _positive(_: object, attribute: object, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        name = getattr(attribute, "name", "value")
        raise InvalidOptionError(f"Backoff.{name} must be a positive number, got {value!r}")


def _check_multiplier(_: object, __: object, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 1):
        raise InvalidOptionError(f"Backoff.multiplier must be >= 1, got {value!r}")


@frozen
class Backoff:
    """How long to wait before retrying after a failure.

    The n-th consecutive failure (counting from 0) waits a uniformly random time in
    ``[0, min(maximum, initial * multiplier**n)]`` ("full jitter", so many clients that failed
    together do not retry together). The count resets only after real progress: a complete
    list, or a watch that delivered something. The defaults are client-go's reflector's
    (800 ms doubling to 30 s; docs/protocol.md, "How watches end, and how to resume").

    A server's ``Retry-After`` (429, 503) replaces the computed delay, capped at
    ``max_retry_after`` so a broken header cannot park the watch for a day.

    Attributes:
        initial: the cap of the first delay, in seconds. Default 0.8.
        maximum: the largest delay, in seconds. Default 30.
        multiplier: growth of the cap per consecutive failure. Default 2.
        max_retry_after: the largest ``Retry-After`` honoured, in seconds. Default 300.

    Raises:
        InvalidOptionError: a value is not positive, ``multiplier`` is below 1, or
            ``maximum`` is below ``initial``.
    """

    initial: float = field(default=0.8, validator=_positive)
    maximum: float = field(default=30.0, validator=_positive)
    multiplier: float = field(default=2.0, validator=_check_multiplier)
    max_retry_after: float = field(default=300.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise InvalidOptionError(
                f"Backoff.maximum ({self.maximum}) must be >= initial ({self.initial})"
            )

    def cap(self, attempt: int) -> float:
        """Return the upper bound of the delay after ``attempt`` consecutive failures (0-based)."""
        if attempt <= 0:
            return self.initial
        # Compare exponents, not values, so huge attempt counts cannot overflow.
        if self.multiplier == 1 or attempt * math.log(self.multiplier) < math.log(
            self.maximum / self.initial
        ):
            return min(self.maximum, self.initial * self.multiplier**attempt)
        return self.maximum

    def delay(self, attempt: int, uniform: float, retry_after: float | None = None) -> float:
        """Return the delay before the next try.

        Args:
            attempt: consecutive failures before this one (0 for the first failure).
            uniform: a random value in ``[0, 1)``.
            retry_after: the server's ``Retry-After`` in seconds, if it sent one.

        Returns:
            Seconds to wait, in ``[0, max(maximum, max_retry_after)]``.
        """
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), self.max_retry_after)
        uniform = min(max(uniform, 0.0), 1.0)
        return self.cap(attempt) * uniform

    def slowest(self, uniform: float) -> float:
        """Return a delay at the slowest pace, in ``[maximum / 2, maximum]`` (hopeless retries)."""
        uniform = min(max(uniform, 0.0), 1.0)
        return self.maximum * (0.5 + uniform / 2)
