"""WorkQueue: dedup, the processing set, delays, backoff, shutdown and statistics."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import crwatch

pytestmark = pytest.mark.anyio

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])


class QueueMachine(RuleBasedStateMachine):
    """Random adds, takes and dones by several workers, checked against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = crwatch.ManualClock()
        self.queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=self.clock)
        self.held: dict[str, int] = {}  # key -> worker holding it
        self.pending: set[str] = set()  # added since it was last taken (must be processed)
        self.added_while_held: set[str] = set()
        self.delayed: dict[str, float] = {}  # key -> earliest time it is due

    @rule(key=KEYS)
    def add(self, key: str) -> None:
        self.queue.add(key)
        self.pending.add(key)
        if key in self.held:
            self.added_while_held.add(key)

    @rule(key=KEYS, delay=st.integers(1, 5))
    def add_after(self, key: str, delay: int) -> None:
        self.queue.add_after(key, delay)
        due = self.clock.now() + delay
        self.delayed[key] = min(due, self.delayed.get(key, due))

    @rule(seconds=st.integers(1, 3))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        for key, due in list(self.delayed.items()):
            if due <= self.clock.now():
                del self.delayed[key]
                self.add_model(key)

    def add_model(self, key: str) -> None:
        self.pending.add(key)
        if key in self.held:
            self.added_while_held.add(key)

    @rule(worker=st.integers(0, 3))
    def take(self, worker: int) -> None:
        try:
            key = self.queue.get_nowait()
        except anyio.WouldBlock:
            # Nothing waiting: every pending key is held (it comes back on done).
            assert self.pending <= set(self.held)
            return
        assert key not in self.held, "two workers on one key"
        assert key in self.pending, "handed out a key nobody added"
        self.held[key] = worker
        self.pending.discard(key)
        self.added_while_held.discard(key)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        del self.held[key]
        self.queue.done(key)

    @invariant()
    def dedup(self) -> None:
        # Each pending key not held waits exactly once; held ones wait in none; a delayed
        # key appears at its time (statistics() moves due keys in first).
        stats = self.queue.statistics()
        assert stats.depth == len(self.pending - set(self.held))
        assert stats.in_flight == len(self.held)
        assert stats.delayed == len(self.delayed)

    def teardown(self) -> None:
        self.advance(10)
        # Finish: every worker finishes, then one worker drains the queue.
        for key in list(self.held):
            del self.held[key]
            self.queue.done(key)
        processed: set[str] = set()
        while True:
            try:
                key = self.queue.get_nowait()
            except anyio.WouldBlock:
                break
            processed.add(key)
            self.queue.done(key)
        assert processed == self.pending, "a key added was not processed after its last add"


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.lists(KEYS, min_size=1, max_size=8), min_size=1, max_size=12),
    workers=st.integers(1, 4),
)
def test_concurrent_workers_never_share_a_key_and_process_every_last_add(
    batches: list[list[str]], workers: int
) -> None:
    """Racing worker tasks never share a key, and every key is processed after its last add."""

    async def main() -> None:
        queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
        running: set[str] = set()
        last_add: dict[str, int] = {}
        started_after: dict[str, int] = {}
        tick = 0

        async def worker() -> None:
            nonlocal tick
            async for key in queue:
                assert key not in running
                running.add(key)
                tick += 1
                started_after[key] = tick
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()
                running.discard(key)
                queue.done(key)

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
            for batch in batches:
                for key in batch:
                    tick += 1
                    last_add[key] = tick
                    queue.add(key)
                await anyio.lowlevel.checkpoint()
            await queue.wait_idle()
            queue.shutdown()
        for key, added in last_add.items():
            assert started_after[key] > added, key

    anyio.run(main, backend="asyncio")


async def test_a_key_waits_once_and_in_first_added_order() -> None:
    """Adding a waiting key again is a no-op (counted as deduplicated); order is FIFO."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    for key in ["b", "a", "b", "c", "a"]:
        queue.add(key)
    assert len(queue) == 3
    assert [queue.get_nowait() for _ in range(3)] == ["b", "a", "c"]
    stats = queue.statistics()
    assert (stats.adds, stats.deduplicated, stats.in_flight) == (3, 2, 3)
    with pytest.raises(anyio.WouldBlock):
        queue.get_nowait()


async def test_a_key_added_while_in_flight_comes_back_after_done() -> None:
    """A key re-added while a worker holds it is not handed out until done(), then once."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    queue.add("k")
    assert queue.get_nowait() == "k"
    queue.add("k")
    queue.add("k")
    assert queue.in_flight("k")
    with pytest.raises(anyio.WouldBlock):
        queue.get_nowait()
    queue.done("k")
    assert queue.get_nowait() == "k"
    queue.done("k")
    with pytest.raises(anyio.WouldBlock):
        queue.get_nowait()


async def test_done_of_a_key_not_in_flight_is_an_error() -> None:
    """done() of a key never handed out (or done twice) raises InvalidOptionError naming it."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(name="q")
    with pytest.raises(crwatch.InvalidOptionError, match="'nope'"):
        queue.done("nope")


async def test_get_waits_for_an_add() -> None:
    """A waiting get() returns the key as soon as it is added."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    got: list[str] = []
    async with anyio.create_task_group() as tg:

        async def take() -> None:
            got.append(await queue.get())

        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        queue.add("x")
    assert got == ["x"]


async def test_cancelled_get_loses_no_key() -> None:
    """A get() cancelled while waiting takes nothing; the next add goes to another waiter."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    got: list[str] = []
    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()

        async def cancelled_taker() -> None:
            with first:
                got.append("first:" + await queue.get())

        async def taker() -> None:
            got.append(await queue.get())

        tg.start_soon(cancelled_taker)
        tg.start_soon(taker)
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await anyio.wait_all_tasks_blocked()
        queue.add("x")
    assert got == ["x"]


async def test_get_woken_then_cancelled_passes_the_key_on() -> None:
    """A get() woken for a key but cancelled before it ran hands the wake to the next waiter.

    asyncio delivers the cancellation even though the wait completed.
    """
    import asyncio

    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await anyio.wait_all_tasks_blocked()
    queue.add("x")  # wakes ``first``...
    first.cancel()  # ...which is cancelled before it runs
    with anyio.fail_after(5):
        assert await second == "x"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_add_after_holds_a_key_until_its_time() -> None:
    """add_after: the key appears once the clock reaches its time; the earlier time wins."""
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock)
    queue.add_after("k", 10)
    queue.add_after("k", 5)  # earlier: wins
    queue.add_after("k", 20)  # later: ignored
    assert queue.statistics().delayed == 1
    clock.advance(4.9)
    with pytest.raises(anyio.WouldBlock):
        queue.get_nowait()
    clock.advance(0.1)
    assert queue.get_nowait() == "k"
    queue.done("k")
    clock.advance(100)
    with pytest.raises(anyio.WouldBlock):
        queue.get_nowait()
    assert queue.statistics().retries == 3
    queue.add_after("now", 0)
    assert queue.get_nowait() == "now"


async def test_waiting_get_wakes_when_a_delayed_key_is_due() -> None:
    """A get() waiting on an empty queue returns a delayed key at its time, not before."""
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock)
    got: list[str] = []
    async with anyio.create_task_group() as tg:

        async def take() -> None:
            got.append(await queue.get())

        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        queue.add_after("later", 3)  # the waiter re-reads the earliest time
        await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline == 3
        clock.advance(2)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        clock.advance(1)
    assert got == ["later"]


async def test_rate_limited_adds_back_off_per_key_until_forgotten() -> None:
    """add_rate_limited waits 5 ms, 10 ms, 20 ms...; forget() resets; num_requeues counts."""
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock)
    for expected in (0.005, 0.01, 0.02):
        queue.add_rate_limited("k")
        clock.advance(expected - 1e-9)
        with pytest.raises(anyio.WouldBlock):
            queue.get_nowait()
        clock.advance(1e-9)
        assert queue.get_nowait() == "k"
        queue.done("k")
    assert queue.num_requeues("k") == 3
    queue.forget("k")
    assert queue.num_requeues("k") == 0
    queue.add_rate_limited("k")
    clock.advance(0.005)
    assert queue.get_nowait() == "k"


async def test_custom_rate_limiter_through_the_protocol() -> None:
    """Any object with when/forget/retries serves as rate limiter."""

    class Fixed:
        def when(self, key: object) -> float:
            return 7.0

        def forget(self, key: object) -> None:
            pass

        def retries(self, key: object) -> int:
            return 0

    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(rate_limiter=Fixed(), clock=clock)
    queue.add_rate_limited("k")
    clock.advance(6.9)
    assert len(queue) == 0 or queue.statistics().depth == 0
    clock.advance(0.1)
    assert queue.get_nowait() == "k"
    assert queue.num_requeues("k") == 1  # counted by the queue, not asked of the limiter
    with pytest.raises(crwatch.InvalidOptionError, match="rate_limiter"):
        crwatch.WorkQueue(rate_limiter=object())  # type: ignore[arg-type]


async def test_shutdown_without_drain_drops_waiting_keys() -> None:
    """shutdown(): waiting and delayed keys dropped, adds ignored, get() raises, done() works."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=crwatch.ManualClock())
    queue.add("a")
    queue.add("b")
    queue.add_after("c", 1)
    assert queue.get_nowait() == "a"
    queue.add("a")
    queue.shutdown()
    queue.add("d")
    with pytest.raises(crwatch.QueueShutDown):
        queue.get_nowait()
    with pytest.raises(crwatch.QueueShutDown):
        await queue.get()
    queue.done("a")  # not re-queued
    stats = queue.statistics()
    assert (stats.depth, stats.in_flight, stats.delayed, stats.shut_down) == (0, 0, 0, True)
    assert queue.idle()


async def test_shutdown_with_drain_hands_out_what_waits() -> None:
    """shutdown(drain=True) still hands out waiting keys, then get() raises and ``async for`` ends.

    Keys re-added while in flight (before the shutdown) count as waiting.
    """
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    queue.add("a")
    queue.add("b")
    assert queue.get_nowait() == "a"
    queue.add("a")  # re-added while in flight, before the shutdown
    queue.shutdown(drain=True)
    queue.add("c")  # ignored
    seen = []
    async with anyio.create_task_group() as tg:

        async def worker() -> None:
            async for key in queue:
                seen.append(key)
                queue.done(key)

        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        assert seen == ["b"]  # "a" comes back only when its holder is done
        queue.done("a")
    assert seen == ["b", "a"]


async def test_waiting_getters_end_at_shutdown() -> None:
    """get()s waiting on an empty queue raise QueueShutDown when it shuts down."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    ended = []
    async with anyio.create_task_group() as tg:

        async def waiter() -> None:
            with pytest.raises(crwatch.QueueShutDown):
                await queue.get()
            ended.append(True)

        for _ in range(3):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        queue.shutdown()
    assert ended == [True] * 3


async def test_wait_idle_returns_when_the_last_key_is_done() -> None:
    """wait_idle() waits until nothing waits, is delayed, or is in flight."""
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock)
    queue.add("a")
    queue.add_after("b", 1)
    idle = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            await queue.wait_idle()
            idle.append(True)

        tg.start_soon(wait)
        key = queue.get_nowait()
        queue.done(key)
        await anyio.wait_all_tasks_blocked()
        assert idle == []  # "b" is still delayed
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        assert queue.get_nowait() == "b"
        await anyio.wait_all_tasks_blocked()
        assert idle == []
        queue.done("b")
    assert idle == [True]


async def test_statistics_time_waits_and_work() -> None:
    """Queue latency, work duration, longest running and unfinished work, on the clock."""
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock, name="widgets")
    queue.add("a")
    queue.add("b")
    clock.advance(2)
    queue.get_nowait()
    clock.advance(1)
    queue.get_nowait()
    clock.advance(0.5)
    stats = queue.statistics()
    assert stats.name == "widgets"
    assert stats.longest_running == pytest.approx(1.5)
    assert stats.unfinished_work == pytest.approx(2.0)
    assert stats.queue_latency.count == 2
    assert stats.queue_latency.total == pytest.approx(5.0)
    assert stats.queue_latency.maximum == pytest.approx(3.0)
    assert stats.queue_latency.buckets[-1] == 2  # both <= 10 s
    assert stats.queue_latency.buckets[-2] == 0  # none <= 1 s
    queue.done("a")
    queue.done("b")
    stats = queue.statistics()
    assert stats.processed == 2
    assert stats.work_duration.count == 2
    assert stats.work_duration.mean == pytest.approx(1.0)
    assert crwatch.Durations.bounds[0] == pytest.approx(1e-8)
    assert stats.longest_running == 0.0


async def test_bad_delay_is_refused() -> None:
    """add_after with a non-number or non-finite delay raises InvalidOptionError."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    for bad in (float("nan"), float("inf"), "1", True):
        with pytest.raises(crwatch.InvalidOptionError, match="delay"):
            queue.add_after("k", bad)  # type: ignore[arg-type]


async def test_delayed_keys_reach_waiters_that_slept_before_they_were_added() -> None:
    """Two idle workers, two delayed keys: each key is handed out at its own time."""
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock)
    got: list[tuple[str, float]] = []
    async with anyio.create_task_group() as tg:

        async def worker() -> None:
            key = await queue.get()
            got.append((key, clock.now()))

        tg.start_soon(worker)
        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        queue.add_after("first", 1)
        queue.add_after("second", 2)
        await anyio.wait_all_tasks_blocked()
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        assert got == [("first", 1.0)]
        clock.advance(1)
    assert got == [("first", 1.0), ("second", 2.0)]
