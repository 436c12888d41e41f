"""Tests of ``crwatch.LeaderElection`` on Leases served by FakeApiServer, in virtual time.

The candidates wait only on a :class:`DrivenClock` (a ManualClock that counts its
sleepers): the test jumps it to the next deadline once every candidate sleeps, so lease
expiry, renew deadlines and jittered retries are exact, whatever the machine's load, and
nothing sleeps in real time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

import crwatch
from crwatch.testing import FakeApiServer, Fault

pytestmark = pytest.mark.anyio

LEASES = crwatch.Resource("coordination.k8s.io", "v1", "leases")
LEASE_TYPE = ("coordination.k8s.io", "v1", "leases")
LEASE_DURATION, RENEW_DEADLINE, RETRY = 15.0, 10.0, 2.0


class DrivenClock(crwatch.ManualClock):
    """A ManualClock that tells how many tasks sleep on it, for a test to drive it."""

    def __init__(self) -> None:
        super().__init__()
        self.sleepers = 0
        self.woken = 0
        self.waits: list[float] = []
        self._changed = anyio.Event()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def sleep_until(self, deadline: float) -> None:
        self.waits.append(deadline - self.now())
        self.sleepers += 1
        self._poke()
        try:
            await super().sleep_until(deadline)
        finally:
            self.sleepers -= 1
            self.woken += 1
            self._poke()

    async def until(self, condition: Callable[[], bool]) -> None:
        with anyio.fail_after(10):
            while not condition():
                await self._changed.wait()

    async def step(self, parked: int) -> None:
        """Once ``parked`` tasks sleep here, jump to the next deadline and let one wake."""
        await self.until(lambda: self.sleepers >= parked)
        deadline = self.next_deadline
        assert deadline is not None
        woken = self.woken
        self.advance_to(deadline)
        await self.until(lambda: self.woken > woken)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, crwatch.Client]]:
    async with (
        FakeApiServer() as server,
        crwatch.Client.from_kubeconfig(server.kubeconfig(tmp_path / "kc")) as client,
    ):
        yield server, client


def candidate(client: crwatch.Client, clock: DrivenClock, identity: str) -> crwatch.LeaderElection:
    return crwatch.LeaderElection(
        client,
        "widgets-controller",
        namespace="default",
        identity=identity,
        lease_duration=LEASE_DURATION,
        renew_deadline=RENEW_DEADLINE,
        retry_period=RETRY,
        clock=clock,
    )


async def leads(elector: crwatch.LeaderElection) -> None:
    with anyio.fail_after(10):
        await elector.wait_leading()


def lease(server: FakeApiServer) -> dict[str, Any]:
    return server.get(
        ("coordination.k8s.io", "v1", "leases"), "widgets-controller", namespace="default"
    )


async def test_two_candidates_only_one_leads(client: tuple[FakeApiServer, crwatch.Client]) -> None:
    """Two candidates started together: exactly one leads, at every step, for a minute."""
    server, api = client
    clock = DrivenClock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    async with a, b:
        await clock.until(lambda: a.is_leader or b.is_leader)
        leader, follower = (a, b) if a.is_leader else (b, a)
        while clock.now() < 60:
            await clock.step(parked=2)
            assert leader.is_leader
            assert not follower.is_leader
        assert lease(server)["spec"]["holderIdentity"] == leader.identity
        assert follower.statistics().holder == leader.identity
        assert leader.statistics().renewals >= 60 // RETRY - 2


async def test_a_holder_that_renews_forever_keeps_the_other_waiting(
    client: tuple[FakeApiServer, crwatch.Client],
) -> None:
    """A follower never takes a Lease that is renewed, even over many lease durations."""
    server, api = client
    clock = DrivenClock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    async with a:
        await leads(a)
        async with b:
            while clock.now() < 10 * LEASE_DURATION:
                await clock.step(parked=2)
            assert a.is_leader
            assert not b.is_leader
            stats = b.statistics()
            assert stats.attempts > 10 * LEASE_DURATION / (RETRY * 2.2)
            assert stats.acquisitions == 0
            assert stats.holder == "a"
    # The leader renews every retry period; the follower's waits are jittered by up to
    # 120 % (client-go's JitterFactor 1.2), so they spread over [2, 4.4] s.
    assert min(clock.waits) == RETRY
    follower_waits = [w for w in clock.waits if w != RETRY]
    assert len(follower_waits) > 10
    assert all(RETRY < w <= RETRY * 2.2 for w in follower_waits)
    assert max(follower_waits) - min(follower_waits) > RETRY * 0.5
    assert lease(server)["spec"]["leaseTransitions"] == 0


async def test_the_leader_leaving_hands_over_at_once(
    client: tuple[FakeApiServer, crwatch.Client],
) -> None:
    """A leader that exits releases the Lease; the follower leads at its next try.

    That is within one jittered retry period, not after the lease duration.
    """
    server, api = client
    clock = DrivenClock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    # a leads first, then leaves while b stays: each candidate runs in its own task.
    leave_a, a_left, leave_b = anyio.Event(), anyio.Event(), anyio.Event()

    async def hold(
        elector: crwatch.LeaderElection,
        leave: anyio.Event,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        async with elector:
            task_status.started()
            await leave.wait()
        if elector is a:
            a_left.set()

    async with anyio.create_task_group() as tg:
        await tg.start(hold, a, leave_a)
        await leads(a)
        await tg.start(hold, b, leave_b)
        await clock.step(parked=2)
        assert a.is_leader
        assert not b.is_leader
        leave_a.set()
        with anyio.fail_after(10):
            await a_left.wait()
        left = clock.now()
        assert not lease(server)["spec"].get("holderIdentity")
        while not b.is_leader:
            await clock.step(parked=1)
        assert clock.now() - left <= RETRY * 2.2
        spec = lease(server)["spec"]
        assert spec["holderIdentity"] == "b"
        assert spec["leaseTransitions"] == 1
        leave_b.set()


async def test_failed_renewals_cancel_the_block_and_the_other_takes_over(
    client: tuple[FakeApiServer, crwatch.Client],
) -> None:
    """When the leader's renewals fail past renew_deadline its block is cancelled.

    The block raises LeadershipLost; the follower takes over only once the lease has
    expired, and never while the old leader still leads.
    """
    server, api = client
    clock = DrivenClock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    outcome: list[tuple[str, float]] = []
    started, ended = anyio.Event(), anyio.Event()

    async def protected(leader: crwatch.LeaderElection) -> None:
        try:
            async with leader.leading():
                outcome.append(("started", clock.now()))
                started.set()
                await anyio.sleep_forever()
        except crwatch.LeadershipLost:
            outcome.append(("lost", clock.now()))
        ended.set()

    async with a:
        await leads(a)
        async with b, anyio.create_task_group() as tg:
            tg.start_soon(protected, a)
            with anyio.fail_after(10):
                await started.wait()
            await clock.step(parked=2)
            await clock.step(parked=2)
            faulted = clock.now()
            rule = server.faults.add(
                Fault.status(500), verb="update", resource="leases", times=None
            )
            while a.is_leader:
                assert not b.is_leader
                await clock.step(parked=2)
            with anyio.fail_after(10):
                await ended.wait()
            assert outcome[1][0] == "lost"
            assert clock.now() - faulted <= RENEW_DEADLINE + RETRY
            assert a.statistics().lost
            assert isinstance(a.statistics().last_error, crwatch.ServerError)
            rule.remove()
            while not b.is_leader:
                await clock.step(parked=1)
            # The last renewal was at most one retry period before the fault.
            assert clock.now() >= faulted - RETRY + LEASE_DURATION
            with pytest.raises(crwatch.LeadershipLost):
                await leads(a)
            tg.cancel_scope.cancel()
    assert lease(server)["spec"]["holderIdentity"] is None  # b released it on exit


async def test_another_holder_ends_leadership_at_once(
    client: tuple[FakeApiServer, crwatch.Client],
) -> None:
    """A leader that sees another holder in the Lease stops leading at its next renewal.

    Its protected block is cancelled and raises LeadershipLost.
    """
    server, api = client
    clock = DrivenClock()
    a = candidate(api, clock, "a")
    async with a:
        await leads(a)
        current = lease(server)
        server.update(
            ("coordination.k8s.io", "v1", "leases"),
            {**current, "spec": {**current["spec"], "holderIdentity": "intruder"}},
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.step, 1)
            with pytest.raises(crwatch.LeadershipLost), anyio.fail_after(10):
                async with a.leading():
                    await anyio.sleep_forever()
        assert a.statistics().lost
        assert clock.now() == RETRY  # the first renewal saw it
    # A lost leader does not release what is not its own.
    assert lease(server)["spec"]["holderIdentity"] == "intruder"


def test_bad_options_are_refused() -> None:
    """Durations must be ordered as client-go requires; names must be valid."""
    client = object()
    bad: list[dict[str, Any]] = [
        {"lease_duration": 10, "renew_deadline": 10},
        {"renew_deadline": 2, "retry_period": 2},
        {"retry_period": 0},
        {"lease_duration": 0.5, "renew_deadline": 0.4, "retry_period": 0.1},
        {"identity": " "},
        {"namespace": "Not A Namespace"},
    ]
    for options in bad:
        options.setdefault("namespace", "ops")
        with pytest.raises(crwatch.InvalidOptionError):
            crwatch.LeaderElection(client, "x", **options)  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.LeaderElection(client, "Bad Name", namespace="ops")  # type: ignore[arg-type]


async def test_default_identity_and_waiting_outside_the_block() -> None:
    """The default identity is the host name plus a random suffix, different per election.

    Waiting before entering the election is an error, not a hang.
    """
    a = crwatch.LeaderElection(object(), "x", namespace="ops")  # type: ignore[arg-type]
    b = crwatch.LeaderElection(object(), "x", namespace="ops")  # type: ignore[arg-type]
    assert a.identity != b.identity
    assert a.identity.rsplit("_", 1)[0] == b.identity.rsplit("_", 1)[0]
    with pytest.raises(crwatch.InvalidOptionError):
        await leads(a)
    with pytest.raises(crwatch.InvalidOptionError):
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(a.leading())


async def test_release_after_a_lost_renewal_answer_still_hands_over(
    client: tuple[FakeApiServer, crwatch.Client],
) -> None:
    """Regression: a leader whose copy of the Lease is stale still releases it on exit.

    A renewal cancelled after the server stored it (the replica was cancelled mid-request)
    left the leader with an old resourceVersion; the release then failed with 409 and the
    successor had to wait for the lease to expire. Simulated here by a write to the Lease
    that keeps the holder; another holder's write must still never be cleared.
    """
    server, api = client
    clock = DrivenClock()
    a = candidate(api, clock, "a")
    async with a:
        await leads(a)
        server.patch(
            LEASE_TYPE,
            "widgets-controller",
            {"metadata": {"labels": {"x": "1"}}},
            namespace="default",
        )
    spec = lease(server)["spec"]
    assert not spec.get("holderIdentity")
    assert spec["leaseDurationSeconds"] == 1

    b = candidate(api, clock, "b")
    async with b:
        await leads(b)
        server.patch(
            LEASE_TYPE,
            "widgets-controller",
            {"spec": {"holderIdentity": "c"}},
            namespace="default",
        )
    assert lease(server)["spec"]["holderIdentity"] == "c"
