"""The fault plan: scripted misbehaviour for chosen requests of a `FakeApiServer`.

A `Fault` is a frozen value saying *what* goes wrong; `FaultPlan.add` says *when* (which verb,
resource, namespace, path, how many times) and returns a `FaultRule` that records each firing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from attrs import define, field, frozen

__all__ = ["Fault", "FaultFiring", "FaultPlan", "FaultRule"]

Verb = Literal["list", "watch", "get", "create", "update", "patch", "delete"]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    503: "The apiserver is shutting down, please try again later.",
    504: "Timeout: request did not complete within the allotted timeout",
}


@frozen
class Fault:
    """What goes wrong. Build one with the named constructors, e.g. ``Fault.status(429)``.

    Stream faults (``end_after``, ``stall``, ``expired_event``, ``malformed_line``,
    ``truncated_line``, ``slow``) act on WATCH responses; ``status``, ``expired``, ``reset``
    and ``stall`` (before headers) act on any request.
    """

    action: str
    code: int = 0
    reason: str = ""
    message: str = ""
    retry_after: int | None = None
    after_events: int = 0
    seconds: float = 0.0
    then: str = "resume"
    line: bytes = b""

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: int | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer with HTTP ``code`` and a JSON Status (``Retry-After`` if given)."""
        return cls(
            "status",
            code=code,
            reason=reason or _REASONS.get(code, "InternalError"),
            message=message or _MESSAGES.get(code, f"injected fault {code}"),
            retry_after=retry_after,
        )

    @classmethod
    def expired(cls, message: str = "too old resource version: 1 (2)") -> Fault:
        """Answer with HTTP 410 Expired (what some servers do instead of an ERROR event)."""
        return cls("status", code=410, reason="Expired", message=message)

    @classmethod
    def expired_event(
        cls, *, after_events: int = 0, message: str = "too old resource version: 1 (2)"
    ) -> Fault:
        """Send an ERROR 410 Expired event in a 200 stream after N events, then close."""
        return cls("expired_event", code=410, message=message, after_events=after_events)

    @classmethod
    def end_after(cls, events: int) -> Fault:
        """End the watch cleanly (chunked EOF) after ``events`` events."""
        return cls("end_after", after_events=events)

    @classmethod
    def stall(
        cls, seconds: float, *, after_events: int = 0, then: Literal["resume", "close"] = "resume"
    ) -> Fault:
        """Send nothing at all for ``seconds``, then resume or close.

        With ``after_events=0`` the stall happens before the response headers (no bytes at
        all); otherwise after that many watch events.
        """
        return cls("stall", seconds=seconds, after_events=after_events, then=then)

    @classmethod
    def malformed_line(cls, *, after_events: int = 0, line: bytes | None = None) -> Fault:
        """Write a bad line after N events, then carry on.

        By default the line is not JSON; ``line`` gives its exact bytes instead (a newline
        is added), for example a watch event whose object has no metadata.
        """
        if line is not None and (not isinstance(line, bytes) or b"\n" in line):
            raise TypeError(f"line must be bytes without a newline, got {line!r}")
        return cls("malformed_line", after_events=after_events, line=line or b"")

    @classmethod
    def truncated_line(cls, *, after_events: int = 0) -> Fault:
        """Write half of an event's JSON after N events, then end the stream."""
        return cls("truncated_line", after_events=after_events)

    @classmethod
    def reset(cls) -> Fault:
        """Abort the connection before any response header."""
        return cls("reset")

    @classmethod
    def slow(cls, seconds_per_event: float) -> Fault:
        """Delay every watch event by ``seconds_per_event``."""
        return cls("slow", seconds=seconds_per_event)

    @property
    def stream_only(self) -> bool:
        """True for faults that only make sense on a watch stream."""
        return self.action in (
            "expired_event",
            "end_after",
            "malformed_line",
            "truncated_line",
            "slow",
        ) or (self.action == "stall" and self.after_events > 0)


@frozen
class FaultFiring:
    """One time a fault fired: when (``time.time()``) and on which request."""

    at: float
    verb: str
    method: str
    path: str
    query: str
    resource: str
    namespace: str


@define(eq=False)
class FaultRule:
    """An installed fault: what, for which requests, and a record of every firing."""

    fault: Fault
    verb: str | None = None
    resource: str | None = None
    group: str | None = None
    namespace: str | None = None
    path: str | None = None
    times: int | None = 1
    firings: list[FaultFiring] = field(factory=list)
    _plan: FaultPlan | None = field(default=None, repr=False)
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(factory=list, repr=False, init=False)

    @property
    def fired(self) -> int:
        """How many times the fault fired."""
        return len(self.firings)

    @property
    def exhausted(self) -> bool:
        """True when the fault will not fire again."""
        return self.times is not None and self.fired >= self.times

    def matches(self, *, verb: str, resource: str, group: str, namespace: str, path: str) -> bool:
        """Tell whether a request falls under this rule (ignoring the count)."""
        if self.fault.stream_only and verb != "watch":
            return False
        return (
            (self.verb is None or self.verb == verb)
            and (self.resource is None or self.resource == resource)
            and (self.group is None or self.group == group)
            and (self.namespace is None or self.namespace == namespace)
            and (self.path is None or path.startswith(self.path))
        )

    def remove(self) -> None:
        """Uninstall the rule (firings stay readable)."""
        if self._plan is not None:
            self._plan.remove(self)

    async def wait_fired(self, n: int = 1, *, timeout: float = 10.0) -> FaultFiring:
        """Wait until the fault has fired ``n`` times in all; return the ``n``-th firing.

        A firing is recorded when the server takes the fault for a request, before the
        fault acts (a stall has begun, a status is about to be sent).

        Raises:
            TimeoutError: fewer than ``n`` firings within ``timeout`` seconds.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        if self.fired < n:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((n, future))
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"fault {self.fault.action!r} fired {self.fired} times, "
                    f"not {n}, within {timeout} s"
                ) from None
            finally:
                self._waiters = [w for w in self._waiters if w[1] is not future]
        return self.firings[n - 1]

    def _record(self, firing: FaultFiring) -> None:
        self.firings.append(firing)
        for n, future in self._waiters:
            if self.fired >= n and not future.done():
                future.set_result(None)


class FaultPlan:
    """The ordered set of installed `FaultRule` values of one server."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(
        self,
        action: Fault,
        *,
        verb: Verb | None = None,
        resource: str | None = None,
        group: str | None = None,
        namespace: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        """Install a fault for matching requests; ``times=None`` fires forever.

        ``resource`` is a plural (``"widgets"``), ``path`` a path prefix. Unset filters
        match everything. Rules are tried in the order they were added; one fires per
        request.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for unlimited")
        rule = FaultRule(
            action,
            verb=verb,
            resource=resource,
            group=group,
            namespace=namespace,
            path=path,
            times=times,
            plan=self,
        )
        self._rules.append(rule)
        return rule

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        """Installed rules, in order."""
        return tuple(self._rules)

    def remove(self, rule: FaultRule) -> None:
        """Uninstall ``rule`` if it is installed."""
        if rule in self._rules:
            self._rules.remove(rule)

    def clear(self) -> None:
        """Uninstall every rule."""
        self._rules.clear()

    def take(
        self,
        *,
        verb: str,
        method: str,
        resource: str,
        group: str,
        namespace: str,
        path: str,
        query: str,
    ) -> Fault | None:
        """Find the first live rule for a request, record the firing, return its fault."""
        for rule in self._rules:
            if rule.exhausted or not rule.matches(
                verb=verb, resource=resource, group=group, namespace=namespace, path=path
            ):
                continue
            rule._record(FaultFiring(time.time(), verb, method, path, query, resource, namespace))
            return rule.fault
        return None
