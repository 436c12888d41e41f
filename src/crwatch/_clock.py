"""Injectable time for the time-based middlewares: the :class:`Clock` protocol and two clocks.

The middlewares that wait (``batch`` with ``max_wait``, ``rate_limit``, ``debounce``) read
time and wait for deadlines only through a clock, so tests drive them with a
:class:`ManualClock` in virtual time instead of sleeping.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from ._exceptions import InvalidOptionError

__all__ = ["Clock", "ManualClock", "default_clock", "validate_clock"]


@runtime_checkable
class Clock(Protocol):
    """What the time-based middlewares need from a clock.

    Times are floats in seconds on the clock's own scale (only differences matter). The
    default clock is anyio's: :func:`anyio.current_time`, :func:`anyio.sleep_until` and
    :class:`anyio.CancelScope` deadlines. Tests use :class:`crwatch.ManualClock`.
    """

    def now(self) -> float:
        """Return the current time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`now` reaches ``deadline`` (return at once if it has)."""
        ...

    def move_on_at(self, deadline: float) -> AbstractContextManager[anyio.CancelScope]:
        """Return a context manager that cancels its body when ``deadline`` comes.

        Like :func:`anyio.move_on_after`: the cancellation is absorbed at the end of the block.
        """
        ...


class _AnyioClock:
    """The default clock: the event loop's clock, through anyio."""

    __slots__ = ()

    def now(self) -> float:
        return anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)

    def move_on_at(self, deadline: float) -> AbstractContextManager[anyio.CancelScope]:
        return anyio.CancelScope(deadline=deadline)

    def __repr__(self) -> str:
        return "<crwatch default clock (anyio)>"


_DEFAULT = _AnyioClock()


def default_clock() -> Clock:
    """Return the clock used when a middleware is given ``clock=None``."""
    return _DEFAULT


def validate_clock(clock: Clock | None) -> Clock:
    """Return ``clock`` (or the default), raising InvalidOptionError if it is no clock."""
    if clock is None:
        return _DEFAULT
    if not isinstance(clock, Clock):
        raise InvalidOptionError(
            f"clock must have now(), sleep_until() and move_on_at() (see crwatch.Clock), "
            f"got {clock!r}"
        )
    return clock


class ManualClock:
    """A clock that moves only when told to: for testing time-based middlewares.

    ::

        clock = crwatch.ManualClock()
        stage = crwatch.batch(max_items=10, max_wait=1.0, clock=clock)
        ...
        clock.advance(1.0)     # wakes every waiter whose deadline is now due

    Waiters are woken by cancelling their wait, so they run at the next checkpoint of the
    event loop, not inside :meth:`advance`. :attr:`next_deadline` tells a test driver
    where to jump next when everything is waiting.

    Args:
        start: the initial time. Default 0.
    """

    def __init__(self, start: float = 0.0) -> None:
        if (
            isinstance(start, bool)
            or not isinstance(start, (int, float))
            or not math.isfinite(start)
        ):
            raise InvalidOptionError(f"start must be a finite number, got {start!r}")
        self._now = float(start)
        self._seq = itertools.count()
        # (deadline, sequence, scope); scopes whose wait ended are skipped when popped.
        self._waiters: list[tuple[float, int, anyio.CancelScope]] = []
        self._active: set[anyio.CancelScope] = set()

    def __repr__(self) -> str:
        return f"<crwatch.ManualClock now={self._now:g} waiters={len(self._active)}>"

    def now(self) -> float:
        """Return the current (virtual) time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`advance` moves the clock to ``deadline`` or past it."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        with self.move_on_at(deadline):
            await anyio.sleep_forever()

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has advanced by ``seconds``."""
        await self.sleep_until(self._now + seconds)

    @contextlib.contextmanager
    def move_on_at(self, deadline: float) -> Iterator[anyio.CancelScope]:
        """Run the body until the clock reaches ``deadline``, then cancel it quietly."""
        with anyio.CancelScope() as scope:
            if deadline <= self._now:
                scope.cancel()
            else:
                heapq.heappush(self._waiters, (deadline, next(self._seq), scope))
                self._active.add(scope)
            try:
                yield scope
            finally:
                self._active.discard(scope)

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline someone is waiting for, or ``None`` when nobody waits."""
        waiters = self._waiters
        while waiters and waiters[0][2] not in self._active:
            heapq.heappop(waiters)
        return waiters[0][0] if waiters else None

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` and wake the waiters now due."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise InvalidOptionError(f"seconds must be a number >= 0, got {seconds!r}")
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when`` (never backwards) and wake the waiters now due."""
        if when > self._now:
            self._now = float(when)
        waiters = self._waiters
        while waiters and waiters[0][0] <= self._now:
            _, _, scope = heapq.heappop(waiters)
            if scope in self._active:
                self._active.discard(scope)
                scope.cancel()
