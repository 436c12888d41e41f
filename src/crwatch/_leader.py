"""Leader election on a ``coordination.k8s.io/v1`` Lease, through the API server.

The algorithm is client-go's ``tools/leaderelection`` (Lease lock):

- A candidate reads the Lease. It may take it when the Lease does not exist (create), has
  no holder (released), or has not changed for ``leaseDurationSeconds`` as measured on the
  candidate's own clock since it last saw it change. Comparing the holder's ``renewTime``
  with the local wall clock would trust clocks to agree; client-go measures locally too
  (https://github.com/kubernetes/client-go/blob/master/tools/leaderelection/leaderelection.go).
- Every write is conditional on the ``resourceVersion`` that was read (a create fails with
  AlreadyExists), so of two candidates racing for one Lease at most one write succeeds.
- The leader renews every ``retry_period``; a renewal that has not succeeded within
  ``renew_deadline`` ends the leadership, as does seeing another holder in the Lease.
- Retries while waiting are jittered by client-go's JitterFactor 1.2: each wait is
  ``retry_period * (1 + 1.2 * random())``.
- On exit a leader releases the Lease (no holder, ``leaseDurationSeconds: 1``) so that a
  successor takes over at its next try instead of waiting for expiry.

What it does not guarantee: fencing. A leader that pauses (a stopped process, a long GC, a
partitioned node) for longer than the lease can still act once it resumes, before it notices
that it lost the Lease; the API server does not refuse its writes. Keep the lease duration
well above the pauses you expect, make writes conditional (resourceVersion preconditions)
where two leaders would do harm, and see
https://kubernetes.io/docs/concepts/architecture/leases/#leader-election.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import TaskGroup
from attrs import frozen

from ._clock import Clock, validate_clock
from ._exceptions import (
    ApiError,
    ConflictError,
    CrwatchError,
    InvalidOptionError,
    NotFoundError,
    TransportError,
)
from ._resource import Resource

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["LEASES", "LeaderElection", "LeaderElectionStatistics", "LeadershipLost"]

log = logging.getLogger("crwatch.leader")

#: The Lease resource.
LEASES: Final = Resource("coordination.k8s.io", "v1", "leases", kind="Lease", namespaced=True)

#: client-go's leaderelection.JitterFactor: waits between tries are stretched by up to 120%.
JITTER_FACTOR: Final = 1.2

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class LeadershipLost(CrwatchError):
    """Leadership ended: the Lease was not renewed in time, or another holder took it.

    Raised by :meth:`LeaderElection.leading` when its block was cancelled for that reason,
    and by :meth:`LeaderElection.wait_leading` once the election is over.
    """


@frozen
class LeaderElectionStatistics:
    """A snapshot of one :class:`LeaderElection`."""

    identity: str
    """This candidate's identity."""
    is_leader: bool
    """Whether it leads now."""
    holder: str
    """The holder last seen in the Lease (``""`` when none)."""
    attempts: int
    """Reads-and-writes of the Lease tried (acquiring and renewing)."""
    failures: int
    """Tries that failed with an error (not counting "held by another")."""
    acquisitions: int
    """Times it became the leader (0 or 1: a lost election is over)."""
    renewals: int
    """Successful renewals."""
    lost: bool
    """Whether it led and lost."""
    last_error: BaseException | None
    """The error of the last failed try, if any."""


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidOptionError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise InvalidOptionError(f"{name} must be finite, got {value!r}")
    return float(value)


def default_identity() -> str:
    """Return the host name and a random suffix: unique per process, readable in the Lease."""
    return f"{socket.gethostname()}_{secrets.token_hex(5)}"


def _micro_time(moment: datetime) -> str:
    # metav1.MicroTime: RFC 3339 with microseconds.
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _released(lease: dict[str, Any]) -> dict[str, Any]:
    # client-go's release: no holder, and a 1 s duration so that candidates need not wait.
    spec = {
        **_spec(lease),
        "holderIdentity": None,
        "leaseDurationSeconds": 1,
        "renewTime": _micro_time(datetime.now(timezone.utc)),
    }
    return {**lease, "spec": spec}


def _spec(lease: dict[str, Any] | None) -> dict[str, Any]:
    spec = (lease or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


class LeaderElection:
    """Compete for leadership through a Lease; lead while it is renewed.

    ::

        async with crwatch.LeaderElection(client, "widgets-controller", namespace="ops") as leader:
            async with leader.leading():       # waits to lead; cancelled when leadership ends
                await controller.run()

    Entering starts a background task (owned by the ``async with``) that tries to acquire
    the Lease ``namespace/name`` every ``retry_period`` (jittered), then renews it. Leaving
    stops it and, if leading, releases the Lease so that another candidate takes over at
    once. Leadership ends when a renewal has not succeeded within ``renew_deadline`` or
    another holder is seen; the election is then over (like client-go's elector): leave the
    block, and enter a new ``LeaderElection`` (a new identity) to stand again.

    No fencing: a leader paused longer than the lease may still act after it lost the
    Lease, before it notices. See the module notes in the documentation.

    Args:
        client: the client for the Lease requests.
        name: the Lease name (a DNS subdomain).
        namespace: the Lease namespace.
        identity: this candidate's identity, unique per process. Default: host name and a
            random suffix.
        lease_duration: seconds a follower waits after the Lease last changed before it
            takes over (client-go default 15; at least 1, written as whole seconds).
        renew_deadline: seconds the leader keeps retrying a renewal before it gives up
            leading (default 10; below ``lease_duration``).
        retry_period: seconds between tries (default 2; ``renew_deadline`` must exceed
            1.2 times it).
        clock: where time comes from (default: the event loop's); tests pass a
            :class:`crwatch.ManualClock`.

    Raises:
        InvalidOptionError: a bad argument.
    """

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        namespace: str,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(name, str) or len(name) > 253 or not _SUBDOMAIN.match(name):
            raise InvalidOptionError(f"the Lease name must be a DNS subdomain, got {name!r}")
        if not isinstance(namespace, str) or not _LABEL.match(namespace):
            raise InvalidOptionError(f"namespace must be a DNS label, got {namespace!r}")
        if identity is None:
            identity = default_identity()
        if not isinstance(identity, str) or not identity.strip():
            raise InvalidOptionError(f"identity must be a non-empty string, got {identity!r}")
        self._lease_duration = _check_positive("lease_duration", lease_duration)
        self._renew_deadline = _check_positive("renew_deadline", renew_deadline)
        self._retry_period = _check_positive("retry_period", retry_period)
        # The same checks as client-go's NewLeaderElector.
        if self._lease_duration < 1:
            raise InvalidOptionError("lease_duration must be at least 1 s (whole seconds)")
        if self._lease_duration <= self._renew_deadline:
            raise InvalidOptionError("lease_duration must be greater than renew_deadline")
        if self._renew_deadline <= JITTER_FACTOR * self._retry_period:
            raise InvalidOptionError(
                f"renew_deadline must be greater than {JITTER_FACTOR} * retry_period"
            )
        self._client = client
        self._name = name
        self._namespace = namespace
        self._identity = identity
        self._clock = validate_clock(clock)
        self._random = random.Random()
        self._task_group: TaskGroup | None = None
        self._entered = False
        self._leading = False
        self._lost = False
        self._over = False
        self._decided = anyio.Event()  # set when it leads, or when the election is over
        self._scopes: set[anyio.CancelScope] = set()
        # The Lease as last read or written, and when (on our clock) its record last changed.
        self._lease: dict[str, Any] | None = None
        self._record: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._attempts = 0
        self._failures = 0
        self._acquisitions = 0
        self._renewals = 0
        self._last_error: BaseException | None = None
        self._failing = False

    def __repr__(self) -> str:
        state = "leading" if self._leading else ("lost" if self._lost else "candidate")
        return (
            f"<crwatch.LeaderElection {self._namespace}/{self._name} "
            f"identity={self._identity!r} {state}>"
        )

    # -- public -----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """This candidate's identity, as written in the Lease's ``holderIdentity``."""
        return self._identity

    @property
    def is_leader(self) -> bool:
        """Whether this candidate leads now."""
        return self._leading

    def statistics(self) -> LeaderElectionStatistics:
        """Return a snapshot of the election's counters and state."""
        return LeaderElectionStatistics(
            identity=self._identity,
            is_leader=self._leading,
            holder=str(_spec(self._lease).get("holderIdentity") or ""),
            attempts=self._attempts,
            failures=self._failures,
            acquisitions=self._acquisitions,
            renewals=self._renewals,
            lost=self._lost,
            last_error=self._last_error,
        )

    async def wait_leading(self) -> None:
        """Wait until this candidate leads.

        Raises:
            LeadershipLost: the election is over (leadership was lost, or the ``async
                with`` block was left) without leading now.
            InvalidOptionError: the election was not entered with ``async with``.
        """
        if not self._entered:
            raise InvalidOptionError("use the LeaderElection as `async with` first")
        await self._decided.wait()
        if not self._leading:
            raise LeadershipLost(self._why_over())

    @contextlib.asynccontextmanager
    async def leading(self) -> AsyncIterator[None]:
        """Wait to lead, then run the block; cancel it the moment leadership ends.

        Raises:
            LeadershipLost: the block was cancelled because leadership ended (or the
                election was over before it started).
        """
        await self.wait_leading()
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)
        if scope.cancelled_caught and not self._leading:
            raise LeadershipLost(self._why_over())

    async def __aenter__(self) -> LeaderElection:
        if self._entered or self._over:
            raise CrwatchError("a LeaderElection can be entered once")
        self._entered = True
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._run, name=f"crwatch.leader {self._namespace}/{self._name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        task_group.cancel_scope.cancel()
        try:
            return await task_group.__aexit__(exc_type, exc, tb)
        finally:
            was_leading = self._leading
            self._end(lost=False)
            if was_leading:
                # Shielded: a cancelled caller still hands over the Lease.
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._renew_deadline):
                    await self._release()

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        clock = self._clock
        while True:
            acquired: bool | None = False
            # Bounded like a renewal: a request that hangs must not stall the candidate.
            with clock.move_on_at(clock.now() + self._renew_deadline):
                acquired = await self._try(acquiring=True)
            if acquired:
                break
            await clock.sleep_until(clock.now() + self._jittered())
        self._leading = True
        self._acquisitions += 1
        self._decided.set()
        log.info("%s/%s: %s is the leader", self._namespace, self._name, self._identity)
        while True:
            await clock.sleep_until(clock.now() + self._retry_period)
            renewed = False
            with clock.move_on_at(clock.now() + self._renew_deadline):
                while True:
                    outcome = await self._try(acquiring=False)
                    if outcome is None:  # another holder: lost at once
                        break
                    if outcome:
                        renewed = True
                        break
                    await clock.sleep_until(clock.now() + self._retry_period)
            if not renewed:
                self._end(lost=True)
                return
            self._renewals += 1

    def _jittered(self) -> float:
        return self._retry_period * (1.0 + JITTER_FACTOR * self._random.random())

    async def _try(self, *, acquiring: bool) -> bool | None:
        """Read the Lease and take or renew it; ``None`` when another holder has it."""
        self._attempts += 1
        try:
            outcome = await self._try_once()
        except (ApiError, TransportError) as exc:
            self._failures += 1
            self._last_error = exc
            level = logging.DEBUG if self._failing else logging.WARNING
            self._failing = True
            log.log(
                level,
                "%s/%s: %s the Lease failed: %s",
                self._namespace,
                self._name,
                "acquiring" if acquiring else "renewing",
                exc,
            )
            return False
        self._failing = False
        if outcome is None and acquiring:
            return False
        return outcome

    async def _try_once(self) -> bool | None:
        client, now = self._client, self._clock.now()
        try:
            lease = await client.get(LEASES, self._name, namespace=self._namespace)
        except NotFoundError:
            if self._leading:
                return None  # deleted under us: someone else may create it now
            try:
                created = await client.create(
                    LEASES, self._lease_body(None, now), namespace=self._namespace
                )
            except ConflictError:  # AlreadyExists: another candidate created it first
                return False
            self._observe(created, now)
            return True
        self._observe(lease, now)
        spec = _spec(lease)
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self._identity:
            if self._leading:
                return None
            duration = spec.get("leaseDurationSeconds")
            seconds = float(duration) if isinstance(duration, (int, float)) else 0.0
            if self._observed_at + seconds > now:
                return False  # held by another and not expired
        try:
            written = await client.replace(
                LEASES, self._lease_body(lease, now), namespace=self._namespace
            )
        except ConflictError:  # someone wrote the Lease since we read it
            return False
        self._observe(written, now)
        return True

    def _lease_body(self, lease: dict[str, Any] | None, now: float) -> dict[str, Any]:
        spec = _spec(lease)
        stamp = _micro_time(datetime.now(timezone.utc))
        ours = spec.get("holderIdentity") == self._identity
        transitions = spec.get("leaseTransitions")
        count = transitions if isinstance(transitions, int) else 0
        new_spec = {
            **spec,
            "holderIdentity": self._identity,
            "leaseDurationSeconds": math.ceil(self._lease_duration),
            "renewTime": stamp,
            "acquireTime": spec.get("acquireTime") if ours else stamp,
            "leaseTransitions": count if ours or lease is None else count + 1,
        }
        if lease is None:
            return {"metadata": {"name": self._name}, "spec": new_spec}
        return {**lease, "spec": new_spec}

    def _observe(self, lease: dict[str, Any], now: float) -> None:
        spec = _spec(lease)
        record = (
            spec.get("holderIdentity"),
            spec.get("leaseDurationSeconds"),
            spec.get("acquireTime"),
            spec.get("renewTime"),
            spec.get("leaseTransitions"),
        )
        if record != self._record:
            self._record = record
            self._observed_at = now
        self._lease = lease

    def _end(self, *, lost: bool) -> None:
        if self._over:
            return
        if lost:
            self._lost = True
            log.warning(
                "%s/%s: %s lost the leadership (%s)",
                self._namespace,
                self._name,
                self._identity,
                self._last_error or "another holder took the Lease",
            )
        self._over = True
        self._leading = False
        self._decided.set()
        for scope in list(self._scopes):
            scope.cancel()

    def _why_over(self) -> str:
        where = f"Lease {self._namespace}/{self._name}"
        if self._lost:
            return f"{self._identity} lost the leadership of {where}"
        return f"the election for {where} is over ({self._identity} is not leading)"

    async def _release(self) -> None:
        lease = self._lease
        if lease is None or _spec(lease).get("holderIdentity") != self._identity:
            return
        try:
            # Conditional on the resourceVersion we last wrote: never clears a successor.
            try:
                await self._client.replace(LEASES, _released(lease), namespace=self._namespace)
            except ConflictError:
                # A renewal cancelled after the server stored it (the caller was cancelled
                # mid-request) leaves our copy stale while we still hold the Lease. Read it
                # again and release only if we are still the holder, conditional on that
                # read: a successor is still never cleared.
                lease = await self._client.get(LEASES, self._name, namespace=self._namespace)
                if _spec(lease).get("holderIdentity") != self._identity:
                    return
                await self._client.replace(LEASES, _released(lease), namespace=self._namespace)
        except (ApiError, TransportError) as exc:
            log.warning("%s/%s: releasing the Lease failed: %s", self._namespace, self._name, exc)
        else:
            log.info("%s/%s: %s released the Lease", self._namespace, self._name, self._identity)
