"""Middlewares: the semantics of each stage, composition, time, and clean shutdown.

Time-based stages run on a :class:`crwatch.ManualClock` driven by :func:`drive`, which
jumps the clock to the next deadline whenever every task is waiting: windows, rates and
quiet periods are checked exactly, with no real sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crwatch
from _support import until
from crwatch import Batch, Event, EventType, ManualClock

pytestmark = pytest.mark.anyio

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def obj(name: str, version: int = 1, generation: int | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": str(version)}
    if generation is not None:
        meta["generation"] = generation
    return {"metadata": meta, "spec": spec or {"v": version}}


def ev(
    type: EventType | str, name: str, version: int = 1, old: dict[str, Any] | None = None, **kw: Any
) -> Event:
    return Event.from_object(type, obj(name, version, **kw), old=old)


async def source(items: Iterable[Any], closed: list[str] | None = None) -> AsyncIterator[Any]:
    """Yield the items from an async generator (cancelling its __anext__ would kill it)."""
    try:
        for item in items:
            yield item
    finally:
        if closed is not None:
            closed.append("source")


async def timed(
    clock: ManualClock, items: Sequence[tuple[float, Any]], closed: list[str] | None = None
) -> AsyncIterator[Any]:
    """Yield each item at its time on the manual clock."""
    try:
        for when, item in items:
            await clock.sleep_until(when)
            yield item
    finally:
        if closed is not None:
            closed.append("source")


def _blocked(task: asyncio.Task[Any]) -> bool:
    waiter = task._fut_waiter  # type: ignore[attr-defined]
    return waiter is not None and not waiter.done()


async def settle() -> None:
    """Return once every other task waits on something not yet done."""
    me = asyncio.current_task()
    for _ in range(10_000):
        await asyncio.sleep(0)
        if all(task is me or _blocked(task) for task in asyncio.all_tasks()):
            return
    raise AssertionError("tasks never settled")


async def drive(
    clock: ManualClock, stream: AsyncIterator[Any], *, stop_after: float = math.inf
) -> list[tuple[float, Any]]:
    """Consume ``stream`` to its end in virtual time; return (delivery time, item) pairs."""
    got: list[tuple[float, Any]] = []
    done = anyio.Event()

    async def consume() -> None:
        try:
            async for item in stream:
                got.append((clock.now(), item))
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        while True:
            await settle()
            if done.is_set():
                break
            deadline = clock.next_deadline
            assert deadline is not None, "deadlock: everyone waits and no deadline is set"
            if deadline > stop_after:
                tg.cancel_scope.cancel()
                break
            clock.advance_to(deadline)
    await aclose(stream)
    return got


async def aclose(stream: object) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    try:
        return [item async for item in stream]
    finally:
        await aclose(stream)


def no_tasks_left() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in others if t.get_name().startswith("crwatch.")], others


def flat(items: Iterable[Any]) -> list[Event]:
    result: list[Event] = []
    for item in items:
        result.extend(item if isinstance(item, Batch) else [item])
    return result


def summary(events: Iterable[Event]) -> list[tuple[str, str]]:
    return [(str(e.type), e.key.split("/")[-1]) for e in events]


# --- pipe and composition ------------------------------------------------------------------


async def test_pipe_applies_middlewares_in_the_order_given() -> None:
    """Order is composition order: only() before batch() filters events, after it batches."""
    events = [ev(ADDED, "a"), ev(DELETED, "a"), ev(ADDED, "b")]

    async with crwatch.pipe(source(events), crwatch.only("ADDED"), crwatch.batch(max_items=5)) as s:
        first = [item async for item in s]
    assert [summary(b) for b in first] == [[("ADDED", "a"), ("ADDED", "b")]]

    async def tag(upstream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for item in upstream:
            yield ("tagged", item)

    async with crwatch.pipe(source(events), crwatch.only("DELETED"), tag) as s:
        assert [(t, e.key) async for t, e in s] == [("tagged", "ns/a")]


async def test_pipe_without_middlewares_is_the_source() -> None:
    """``pipe(source)`` yields the source's items unchanged."""
    events = [ev(ADDED, "a"), ev(MODIFIED, "a", 2)]
    async with crwatch.pipe(source(events)) as s:
        assert [e async for e in s] == events


def test_pipe_validates_at_call_time() -> None:
    """Bad arguments are an InvalidOptionError when pipe() is called.

    A non-iterable source, a non-callable middleware, or one that returns no async iterator.
    """
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.pipe([1, 2])  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.pipe(source([]), "only")  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError, match="middleware"):
        crwatch.pipe(source([]), lambda upstream: [1])  # type: ignore[arg-type,return-value]


async def test_closing_the_pipeline_closes_every_stage_and_the_source() -> None:
    """Leaving ``async with pipe(...)`` early stops every stage and closes the source.

    The stages' tasks end and the upstream async generator is closed, through filters and
    time-based stages alike.
    """
    closed: list[str] = []
    events = [ev(ADDED, f"o{i}") for i in range(100)]
    async with crwatch.pipe(
        source(events, closed),
        crwatch.where(lambda e: True),
        crwatch.batch(max_items=3, max_wait=10),
        crwatch.rate_limit(per_second=1000, burst=5),
    ) as s:
        first = await s.__anext__()
        assert len(first) == 3
    assert closed == ["source"]
    no_tasks_left()


async def test_closing_the_last_stage_closes_the_chain() -> None:
    """The Informer closes only the last stage: each stage closes its own upstream."""
    closed: list[str] = []
    upstream = source([ev(ADDED, f"o{i}") for i in range(10)], closed)
    stage = crwatch.debounce(quiet=5)(crwatch.only("ADDED")(crwatch.batch(max_items=2)(upstream)))
    with pytest.raises(TypeError, match="debounce"):
        await stage.__anext__()  # a Batch reached debounce(): it needs events
    await aclose(stage)
    assert closed == ["source"]
    no_tasks_left()


async def test_a_stage_never_iterated_closes_its_source() -> None:
    """Closing a time-based stage that never started still closes its upstream."""
    closed: list[str] = []
    upstream = source([ev(ADDED, "a")], closed)
    await upstream.__anext__()
    stage = crwatch.batch(max_items=2)(upstream)
    await aclose(stage)
    assert closed == ["source"]


async def test_upstream_error_comes_after_what_was_held() -> None:
    """An upstream error is raised downstream after the held items are delivered."""

    async def failing() -> AsyncIterator[Event]:
        yield ev(ADDED, "a")
        yield ev(ADDED, "b")
        raise crwatch.StallTimeout("boom")

    stage = crwatch.batch(max_items=10)(failing())
    got = [await stage.__anext__()]
    with pytest.raises(crwatch.StallTimeout):
        await stage.__anext__()
    with pytest.raises(StopAsyncIteration):
        await stage.__anext__()
    await aclose(stage)
    assert summary(got[0]) == [("ADDED", "a"), ("ADDED", "b")]


async def test_a_pump_cancelled_from_outside_ends_the_stage() -> None:
    """A pump task cancelled from outside (loop shutdown) ends the stage with an error.

    The stage delivers what it held, then raises a CrwatchError instead of waiting forever
    or spinning.
    """

    async def forever() -> AsyncIterator[Event]:
        yield ev(ADDED, "a")
        await anyio.sleep_forever()
        yield ev(ADDED, "never")

    stage = crwatch.batch(max_items=10)(forever())
    with anyio.move_on_after(0.01):
        await stage.__anext__()
    stage._pump._task.cancel()  # type: ignore[attr-defined]
    with anyio.fail_after(1):
        assert summary(await stage.__anext__()) == [("ADDED", "a")]
        with pytest.raises(crwatch.CrwatchError, match="cancelled"):
            await stage.__anext__()
    await aclose(stage)


async def test_time_based_next_survives_cancellation() -> None:
    """Cancelling a time-based stage's ``__anext__`` (a consumer's timeout) is safe.

    No event is lost and the async-generator upstream survives.
    """
    clock = ManualClock()
    items = [(1.0, ev(ADDED, "a")), (2.0, ev(ADDED, "b")), (3.0, ev(ADDED, "c"))]
    stage = crwatch.rate_limit(per_second=1, clock=clock)(timed(clock, items))
    for _ in range(3):
        with anyio.move_on_after(0.001):
            await stage.__anext__()
            raise AssertionError("nothing is due before the clock moves")
    got = await drive(clock, stage)
    assert [(t, e.key) for t, e in got] == [(1.0, "ns/a"), (2.0, "ns/b"), (3.0, "ns/c")]


# --- filters -------------------------------------------------------------------------------


async def test_only_keeps_the_given_types_and_validates() -> None:
    """only() passes the named types; bad or missing types fail at call time."""
    events = [ev(ADDED, "a"), ev(MODIFIED, "a", 2), ev(DELETED, "a", 3)]
    got = await collect(crwatch.only("ADDED", EventType.DELETED)(source(events)))
    assert summary(got) == [("ADDED", "a"), ("DELETED", "a")]
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.only()
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.only("BOOKMARK")
    assert repr(crwatch.only("DELETED", "ADDED")) == "crwatch.only('ADDED', 'DELETED')"


async def test_filters_filter_inside_batches_and_drop_empty_ones() -> None:
    """A filter after batch() filters each batch's events; a batch left empty is skipped."""
    events = [ev(ADDED, "a"), ev(ADDED, "b"), ev(DELETED, "a"), ev(DELETED, "b"), ev(ADDED, "c")]
    got = await collect(crwatch.only("ADDED")(crwatch.batch(max_items=2)(source(events))))
    assert [summary(b) for b in got] == [[("ADDED", "a"), ("ADDED", "b")], [("ADDED", "c")]]


async def test_filters_reject_other_items() -> None:
    """A filter given something else than events or batches says so."""
    with pytest.raises(TypeError, match="only"):
        await collect(crwatch.only("ADDED")(source([42])))


async def test_where_tests_every_event_including_deletions() -> None:
    """where(fn) keeps events fn accepts; it sees deletions too (the user's explicit call)."""
    events = [ev(ADDED, "keep"), ev(ADDED, "drop"), ev(DELETED, "keep"), ev(DELETED, "drop")]
    got = await collect(crwatch.where(lambda e: e.key.endswith("keep"))(source(events)))
    assert summary(got) == [("ADDED", "keep"), ("DELETED", "keep")]
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.where(None)  # type: ignore[arg-type]


async def test_generation_changed_drops_status_only_updates() -> None:
    """generation_changed() passes ADDED, spec changes and deletions; not status updates."""
    events = [
        ev(ADDED, "a", 1, generation=1),
        ev(MODIFIED, "a", 2, generation=1),  # status only
        ev(MODIFIED, "a", 3, generation=2),
        ev(MODIFIED, "a", 4, generation=2),  # status only
        ev(DELETED, "a", 5, generation=2),
    ]
    got = await collect(crwatch.generation_changed()(source(events)))
    assert [e.resource_version for e in got] == ["1", "3", "5"]


async def test_changed_compares_with_the_last_state_passed_on() -> None:
    """Changes a predicate held back add up: old is the last state delivered, not the last seen."""

    def grew_by_two(old: dict[str, Any], new: dict[str, Any]) -> bool:
        return bool(new["spec"]["v"] - old["spec"]["v"] >= 2)

    events = [ev(ADDED, "a", 1), ev(MODIFIED, "a", 2), ev(MODIFIED, "a", 3), ev(MODIFIED, "a", 4)]
    got = await collect(crwatch.changed(grew_by_two)(source(events)))
    assert [e.resource_version for e in got] == ["1", "3"]
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.changed(3)  # type: ignore[arg-type]


@st.composite
def histories(draw: st.DrawFn, *, keys: str = "abc", max_size: int = 25) -> list[Event]:
    """Draw a valid history: ADDED only for absent keys, MODIFIED/DELETED for present ones."""
    present: set[str] = set(draw(st.sets(st.sampled_from(keys))))
    version = 1
    events: list[Event] = []
    state: dict[str, dict[str, Any]] = {k: obj(k, 0) for k in present}
    for _ in range(draw(st.integers(0, max_size))):
        key = draw(st.sampled_from(keys))
        version += 1
        if key not in present:
            state[key] = obj(key, version)
            events.append(Event.from_object(ADDED, state[key]))
            present.add(key)
        elif draw(st.booleans()):
            old, state[key] = state[key], obj(key, version)
            events.append(Event.from_object(MODIFIED, state[key], old=old))
        else:
            events.append(Event.from_object(DELETED, state.pop(key)))
            present.discard(key)
    return events


PREDICATE_CHOICES = st.sampled_from(
    [
        lambda old, new: False,
        lambda old, new: True,
        crwatch.generation_differs,
        crwatch.not_(crwatch.resource_version_differs),
        crwatch.all_of(crwatch.labels_differ, crwatch.finalizers_differ),
    ]
)


@HYPOTHESIS
@given(events=histories(), predicate=PREDICATE_CHOICES)
def test_changed_never_drops_a_deletion(events: list[Event], predicate: Any) -> None:
    """Regression test for kube-rs #1768: changed() never drops a deletion.

    Whatever the predicate (even one that is always false), every DELETED and every ADDED
    passes changed(); only MODIFIED events are judged.
    """
    got = anyio.run(collect, crwatch.changed(predicate)(source(events)))
    assert [e for e in events if e.type is not MODIFIED] == [
        e for e in got if e.type is not MODIFIED
    ]
    assert all(e in events for e in got)


# --- coalescing ----------------------------------------------------------------------------


def apply(view: dict[str, dict[str, Any]], events: Iterable[Event], *, strict: bool) -> None:
    for event in events:
        if strict:
            assert (event.key in view) == (event.type is not ADDED), f"invalid {event}"
        if event.type is DELETED:
            view.pop(event.key, None)
        else:
            view[event.key] = event.object


def coalesce_model(window: list[Event]) -> list[str]:
    """Keys in order of first appearance: the order of a coalesced batch."""
    return list(dict.fromkeys(e.key for e in window))


@HYPOTHESIS
@given(events=histories(), cuts=st.lists(st.integers(0, 25), max_size=4))
def test_coalescing_is_apply_in_order_keep_last_per_key(
    events: list[Event], cuts: list[int]
) -> None:
    """Coalescing equals "apply in order, keep last per key", window by window.

    Split into windows, each coalesced by batch(coalesce=True): the consumer's view ends
    equal, every delivered event is a valid transition of that view (no ADDED for a present
    key, no MODIFIED/DELETED for an absent one), the latest state wins, a seen object's
    deletion is never dropped, and keys come in order of their first event in the window.
    """
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    windows = [events[a:b] for a, b in itertools.pairwise(bounds)]
    clock = ManualClock()
    timed_items = [(float(i), e) for i, w in enumerate(windows) for e in w]

    async def run() -> list[tuple[float, Any]]:
        stage = crwatch.batch(max_items=1000, max_wait=0.5, coalesce=True, clock=clock)
        return await drive(clock, stage(timed(clock, timed_items)))

    got = anyio.run(run)
    batches = [b for _, b in got]
    # The initial view: keys whose first event is not ADDED existed before.
    initial: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.key not in initial and e.type is not ADDED:
            initial[e.key] = {"before": True}
        initial.setdefault(e.key, {})
    view_raw = {k: v for k, v in initial.items() if v}
    view_out = dict(view_raw)
    apply(view_raw, events, strict=True)
    by_window = {math.floor(t): b for t, b in got}
    assert len(by_window) == len(got)
    for when, b in got:  # at the window's end, or at once when the upstream ended
        assert when in (math.floor(when) + 0.5, len(windows) - 1)
        assert len(b) > 0
        apply(view_out, b, strict=True)
    assert view_out == view_raw
    delivered = [e for b in batches for e in b]
    for index, window in enumerate(windows):
        out = by_window.get(index)
        first = {}
        for e in window:
            first.setdefault(e.key, e.type)
        seen_before = {key for key, type in first.items() if type is not ADDED}
        deleted = {e.key for e in window if e.type is DELETED} & seen_before
        if deleted:
            assert out is not None
            assert deleted <= {e.key for e in out if e.type is DELETED}
        if out is not None:
            assert list(out.keys) == [k for k in coalesce_model(window) if k in out.keys]
    assert all(e.object in [x.object for x in events] for e in delivered)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ([ev(ADDED, "a", 1), ev(MODIFIED, "a", 2)], [("ADDED", "a", "2")]),
        ([ev(ADDED, "a", 1), ev(MODIFIED, "a", 2), ev(DELETED, "a", 3)], []),
        ([ev(MODIFIED, "a", 2), ev(MODIFIED, "a", 3)], [("MODIFIED", "a", "3")]),
        ([ev(MODIFIED, "a", 2), ev(DELETED, "a", 3)], [("DELETED", "a", "3")]),
        (
            [ev(DELETED, "a", 2), ev(ADDED, "a", 3), ev(MODIFIED, "a", 4)],
            [("DELETED", "a", "2"), ("ADDED", "a", "4")],
        ),
        ([ev(DELETED, "a", 2), ev(ADDED, "a", 3), ev(DELETED, "a", 4)], [("DELETED", "a", "2")]),
        (
            [ev(MODIFIED, "b", 2), ev(ADDED, "a", 3), ev(MODIFIED, "b", 4)],
            [("MODIFIED", "b", "4"), ("ADDED", "a", "3")],
        ),
    ],
)
async def test_coalescing_rules(window: list[Event], expected: list[tuple[str, str, str]]) -> None:
    """The table in batch()'s docstring, row by row."""
    got = await collect(crwatch.batch(max_items=100, coalesce=True)(source(window)))
    assert [(str(e.type), e.key[3:], e.resource_version) for b in got for e in b] == expected


async def test_coalesced_modified_keeps_the_old_state_before_the_window() -> None:
    """MODIFIED, MODIFIED coalesces to one MODIFIED whose ``old`` is the state before both."""
    before = obj("a", 1)
    first = Event.from_object(MODIFIED, obj("a", 2), old=before)
    second = Event.from_object(MODIFIED, obj("a", 3), old=first.object)
    (b,) = await collect(crwatch.batch(max_items=10, coalesce=True)(source([first, second])))
    assert b[0].old is before
    assert b[0].object is second.object


async def test_coalescing_batch_counts_delivered_events() -> None:
    """max_items counts the events a coalesced batch would deliver, never more."""
    events = [ev(ADDED, "a", 1), ev(MODIFIED, "a", 2), ev(ADDED, "b", 3), ev(DELETED, "b", 4)]
    events += [ev(ADDED, "c", 5), ev(ADDED, "d", 6), ev(ADDED, "e", 7)]
    got = await collect(crwatch.batch(max_items=3, coalesce=True)(source(events)))
    assert [[e.key[3:] for e in b] for b in got] == [["a", "c", "d"], ["e"]]
    assert all(len(b) <= 3 for b in got)


# --- batch ---------------------------------------------------------------------------------


async def test_batch_by_count_time_and_end() -> None:
    """A batch leaves when full, max_wait after its window opened, or at the end.

    Windows open at the first event after a delivery.
    """
    clock = ManualClock()
    items = [
        (0.0, ev(ADDED, "a")),
        (0.1, ev(ADDED, "b")),
        (0.2, ev(ADDED, "c")),  # full at 3
        (0.3, ev(ADDED, "d")),  # window 0.3 .. 1.3
        (2.0, ev(ADDED, "e")),  # window 2.0 .. 3.0, cut short by the end at 2.5
        (2.5, ev(ADDED, "f")),
    ]
    stage = crwatch.batch(max_items=3, max_wait=1.0, clock=clock)(timed(clock, items))
    got = await drive(clock, stage)
    assert [(t, [e.key[3:] for e in b]) for t, b in got] == [
        (0.2, ["a", "b", "c"]),
        (1.3, ["d"]),
        (2.5, ["e", "f"]),
    ]


async def test_batch_without_max_wait_waits_for_a_full_batch() -> None:
    """Without max_wait a partial batch waits for more events (or the end)."""
    clock = ManualClock()
    items = [(0.0, ev(ADDED, "a")), (50.0, ev(ADDED, "b")), (60.0, ev(ADDED, "c"))]
    got = await drive(clock, crwatch.batch(max_items=2, clock=clock)(timed(clock, items)))
    assert [(t, len(b)) for t, b in got] == [(50.0, 2), (60.0, 1)]


def test_batch_value() -> None:
    """Batch is a frozen value: len, iteration, indexing, keys in first-appearance order."""
    events = (ev(ADDED, "a"), ev(ADDED, "b"), ev(MODIFIED, "a", 2))
    b = Batch(events)
    assert len(b) == 3
    assert list(b) == list(events)
    assert b[2] is events[2]
    assert b.keys == ("ns/a", "ns/b")
    assert b == Batch(events)
    with pytest.raises(AttributeError):
        b.events = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    "options",
    [
        {"max_items": 0},
        {"max_items": True},
        {"max_items": 2.0},
        {"max_items": 1, "max_wait": 0},
        {"max_items": 1, "max_wait": math.nan},
        {"max_items": 1, "coalesce": "yes"},
        {"max_items": 1, "clock": object()},
    ],
)
def test_batch_validates_options(options: dict[str, Any]) -> None:
    """Wrong options are InvalidOptionError at call time."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.batch(**options)


# --- rate_limit ----------------------------------------------------------------------------


arrivals = st.lists(st.floats(0, 5, allow_nan=False).map(lambda x: round(x, 2)), max_size=30)


def within_rate(times: list[float], rate: float, burst: int) -> bool:
    times = sorted(times)
    return all(
        (j - i + 1) <= rate * (times[j] - times[i]) + burst + 1e-6
        for i in range(len(times))
        for j in range(i, len(times))
    )


@HYPOTHESIS
@given(
    times=arrivals,
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    burst=st.integers(1, 4),
    per_key=st.booleans(),
)
def test_rate_limit_never_exceeds_rate_times_t_plus_burst(
    times: list[float], rate: float, burst: int, per_key: bool
) -> None:
    """Over any interval of t seconds at most rate×t+burst items leave.

    Per key with per_key=True; each leaves no earlier than it arrived, none is dropped, and
    the items of one key keep their order.
    """
    clock = ManualClock()
    items = [(t, ev(MODIFIED, f"k{i % 3}", i)) for i, t in enumerate(sorted(times))]
    arrived = {id(e): t for t, e in items}

    async def run() -> list[tuple[float, Any]]:
        stage = crwatch.rate_limit(per_second=rate, burst=burst, per_key=per_key, clock=clock)
        return await drive(clock, stage(timed(clock, items)))

    got = anyio.run(run)
    assert sorted(id(e) for _, e in got) == sorted(arrived)
    assert all(t >= arrived[id(e)] for t, e in got)
    groups = {e.key for _, e in got} if per_key else {None}
    for group in groups:
        mine = [(t, e) for t, e in got if group is None or e.key == group]
        assert within_rate([t for t, _ in mine], rate, burst)
        assert [e for _, e in mine] == [e for _, e in items if group is None or e.key == group]


async def test_rate_limit_delays_excess_in_order() -> None:
    """Overall limit: a burst goes out at once, the rest one token interval apart, in order."""
    clock = ManualClock()
    items = [(0.0, ev(ADDED, f"o{i}")) for i in range(5)]
    stage = crwatch.rate_limit(per_second=2, burst=2, clock=clock)(timed(clock, items))
    got = await drive(clock, stage)
    assert [(t, e.key[3:]) for t, e in got] == [
        (0.0, "o0"),
        (0.0, "o1"),
        (0.5, "o2"),
        (1.0, "o3"),
        (1.5, "o4"),
    ]


async def test_rate_limit_per_key_lets_other_keys_pass() -> None:
    """per_key: a throttled key does not hold back other keys."""
    clock = ManualClock()
    items = [(0.0, ev(MODIFIED, "hot", i)) for i in range(3)] + [(0.0, ev(MODIFIED, "cold", 9))]
    stage = crwatch.rate_limit(per_second=1, per_key=True, clock=clock)(timed(clock, items))
    got = await drive(clock, stage)
    assert [(t, e.key[3:], e.resource_version) for t, e in got] == [
        (0.0, "hot", "0"),
        (0.0, "cold", "9"),
        (1.0, "hot", "1"),
        (2.0, "hot", "2"),
    ]


async def test_rate_limit_coalesces_what_waits_and_never_drops_deletions() -> None:
    """coalesce=True: events waiting for a token merge per key (latest state wins).

    A deletion of a delivered object still goes out; nothing is silently lost.
    """
    clock = ManualClock()
    items = [
        (0.0, ev(ADDED, "a", 1)),
        (0.0, ev(MODIFIED, "a", 2)),  # waits for a token ...
        (0.1, ev(MODIFIED, "a", 3)),  # ... and merges
        (0.2, ev(ADDED, "b", 4)),
        (0.3, ev(DELETED, "b", 5)),  # b never delivered: collapses
        (0.4, ev(MODIFIED, "a", 6)),
        (0.5, ev(DELETED, "a", 7)),  # a was delivered: its deletion goes out
    ]
    stage = crwatch.rate_limit(per_second=1, coalesce=True, clock=clock)(timed(clock, items))
    got = await drive(clock, stage)
    assert [(t, str(e.type), e.key[3:], e.resource_version) for t, e in got] == [
        (0.0, "ADDED", "a", "1"),
        (1.0, "DELETED", "a", "7"),
    ]


async def test_rate_limit_limits_batches_as_items() -> None:
    """After batch(), each Batch takes one token (one call to the consumer)."""
    clock = ManualClock()
    items = [(0.0, ev(ADDED, f"o{i}")) for i in range(6)]
    got = await drive(
        clock,
        crwatch.pipe(
            timed(clock, items),
            crwatch.batch(max_items=2, clock=clock),
            crwatch.rate_limit(per_second=4, clock=clock),
        ),
    )
    assert [(t, len(b)) for t, b in got] == [(0.0, 2), (0.25, 2), (0.5, 2)]


@pytest.mark.parametrize(
    "options",
    [
        {"per_second": 0},
        {"per_second": -1},
        {"per_second": math.inf},
        {"per_second": 1, "burst": 0},
        {"per_second": 1, "burst": 1.5},
        {"per_second": 1, "per_key": 1},
    ],
)
def test_rate_limit_validates_options(options: dict[str, Any]) -> None:
    """Wrong options are InvalidOptionError at call time."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.rate_limit(**options)


# --- debounce ------------------------------------------------------------------------------


async def test_debounce_delivers_the_settled_state_per_key() -> None:
    """A key is delivered, merged, quiet seconds after its last event.

    Keys are independent; a deletion of a seen object is delivered; create-then-delete
    collapses to nothing.
    """
    clock = ManualClock()
    items = [
        (0.0, ev(MODIFIED, "a", 1)),
        (0.5, ev(MODIFIED, "a", 2)),
        (0.6, ev(MODIFIED, "b", 3)),
        (0.9, ev(MODIFIED, "a", 4)),  # a settles at 1.9
        (3.0, ev(DELETED, "b", 5)),  # b settled at 1.6; its deletion at 4.0
        (3.0, ev(ADDED, "c", 6)),
        (3.5, ev(DELETED, "c", 7)),  # c never delivered: nothing
        (10.0, ev(ADDED, "d", 8)),  # the end flushes d at once
    ]
    got = await drive(clock, crwatch.debounce(quiet=1, clock=clock)(timed(clock, items)))
    assert [(t, str(e.type), e.key[3:], e.resource_version) for t, e in got] == [
        (1.6, "MODIFIED", "b", "3"),
        (1.9, "MODIFIED", "a", "4"),
        (4.0, "DELETED", "b", "5"),
        (10.0, "ADDED", "d", "8"),
    ]


async def test_debounce_max_wait_bounds_the_delay() -> None:
    """A key that never goes quiet is still delivered every max_wait seconds."""
    clock = ManualClock()
    items = [(i * 0.4, ev(MODIFIED, "a", i)) for i in range(9)]  # 0.0 .. 3.2
    items.append((100.0, ev(MODIFIED, "z", 99)))
    stage = crwatch.debounce(quiet=1, max_wait=1.9, clock=clock)(timed(clock, items))
    got = await drive(clock, stage)
    assert [(t, e.resource_version) for t, e in got] == [(1.9, "4"), (3.9, "8"), (100.0, "99")]


def test_debounce_validates_options() -> None:
    """Quiet and max_wait must be positive numbers."""
    for options in ({"quiet": 0}, {"quiet": 1, "max_wait": -1}, {"quiet": "1"}):
        with pytest.raises(crwatch.InvalidOptionError):
            crwatch.debounce(**options)  # type: ignore[arg-type]


MERGING_STAGES = {
    "debounce": lambda clock: crwatch.debounce(quiet=1, clock=clock),
    "rate_limit_coalesce": lambda clock: crwatch.rate_limit(
        per_second=1, coalesce=True, clock=clock
    ),
    "rate_limit_coalesce_per_key": lambda clock: crwatch.rate_limit(
        per_second=2, burst=2, per_key=True, coalesce=True, max_pending=2, clock=clock
    ),
}


@pytest.mark.parametrize("stage_name", sorted(MERGING_STAGES))
@HYPOTHESIS
@given(
    events=histories(max_size=15),
    gaps=st.lists(st.sampled_from([0.0, 0.3, 2.0]), min_size=15),
)
def test_merging_stages_keep_the_view_and_every_deletion(
    stage_name: str, events: list[Event], gaps: list[float]
) -> None:
    """Whatever the timing, debounce and coalescing rate limits keep the consumer's view right.

    Their events are valid transitions of the view, end in the same view, and every
    deletion of a delivered object is delivered.
    """
    make_stage = MERGING_STAGES[stage_name]
    clock = ManualClock()
    now = 0.0
    items = []
    for event, gap in zip(events, gaps, strict=False):
        now += gap
        items.append((now, event))

    async def run() -> list[tuple[float, Any]]:
        return await drive(clock, make_stage(clock)(timed(clock, items)))

    got = [e for _, e in anyio.run(run)]
    initial = {}
    for e in events:
        if e.key not in initial:
            initial[e.key] = e.type is not ADDED
    view_raw = {k: {} for k, present in initial.items() if present}
    view_out = dict(view_raw)
    apply(view_raw, events, strict=True)
    apply(view_out, got, strict=True)
    assert view_out.keys() == view_raw.keys()
    assert all(view_out[k] is view_raw[k] for k in view_raw)


@HYPOTHESIS
@given(
    events=histories(max_size=15),
    gaps=st.lists(st.sampled_from([0.0, 0.3, 2.0]), min_size=15),
    predicate=PREDICATE_CHOICES,
    max_items=st.integers(1, 4),
)
def test_a_whole_pipeline_never_loses_an_object_or_a_deletion(
    events: list[Event], gaps: list[float], predicate: Any, max_items: int
) -> None:
    """changed() → debounce() → batch(coalesce) → rate_limit(coalesce): same set of objects.

    Whatever the predicate and the timing, the consumer ends with exactly the objects the
    raw events leave, through valid transitions only: no filter or merge lost a deletion.
    """
    clock = ManualClock()
    now = 0.0
    items = []
    for event, gap in zip(events, gaps, strict=False):
        now += gap
        items.append((now, event))

    async def run() -> list[tuple[float, Any]]:
        pipeline = crwatch.pipe(
            timed(clock, items),
            crwatch.changed(predicate),
            crwatch.debounce(quiet=0.5, clock=clock),
            crwatch.batch(max_items=max_items, max_wait=1, coalesce=True, clock=clock),
            crwatch.rate_limit(per_second=1, coalesce=True, clock=clock),
        )
        return await drive(clock, pipeline)

    got = flat(b for _, b in anyio.run(run))
    initial = {}
    for e in events:
        initial.setdefault(e.key, e.type is not ADDED)
    view_raw = {k: {} for k, present in initial.items() if present}
    view_out = dict(view_raw)
    apply(view_raw, events, strict=True)
    apply(view_out, got, strict=True)
    assert view_out.keys() == view_raw.keys()


# --- the clock -----------------------------------------------------------------------------


async def test_manual_clock() -> None:
    """ManualClock moves only when advanced, wakes due waiters, reports the next deadline."""
    clock = ManualClock(10)
    assert clock.now() == 10
    woke: list[float] = []

    async def sleeper(until: float) -> None:
        await clock.sleep_until(until)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 12.0)
        tg.start_soon(sleeper, 11.0)
        await settle()
        assert clock.next_deadline == 11.0
        clock.advance(1.5)
        await settle()
        assert woke == [11.5]
        assert clock.next_deadline == 12.0
        clock.advance_to(20)
    assert woke == [11.5, 20.0]
    assert clock.next_deadline is None
    await clock.sleep(0)  # due at once
    with clock.move_on_at(5) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    with pytest.raises(crwatch.InvalidOptionError):
        clock.advance(-1)
    with pytest.raises(crwatch.InvalidOptionError):
        ManualClock(math.inf)
    assert isinstance(clock, crwatch.Clock)


async def test_default_clock_runs_in_real_time() -> None:
    """Without a clock, stages use anyio's: a 20 ms window takes about 20 ms."""
    start = anyio.current_time()

    async def slow() -> AsyncIterator[Event]:
        yield ev(ADDED, "a")
        await anyio.sleep(1)
        yield ev(ADDED, "b")

    stage = crwatch.batch(max_items=5, max_wait=0.02)(slow())
    with anyio.fail_after(0.5):
        first = await stage.__anext__()
    await aclose(stage)
    assert len(first) == 1
    assert 0.015 <= anyio.current_time() - start < 0.5
    no_tasks_left()


# --- end to end through crwatch.watch() ----------------------------------------------------

SPECS = crwatch.Resource("gateway.example.com", "v1", "openapispecs")


async def test_pipe_over_watch_against_the_fake_api_server(
    fake_apiserver: Any, crwatch_client: crwatch.Client
) -> None:
    """pipe() over a real watch: the middlewares work end to end.

    Status-only writes are filtered, changes batched and coalesced, rate limited, and the
    deletion of a delivered object arrives.
    """
    rtype = fake_apiserver.register_crd(
        group="gateway.example.com",
        version="v1",
        plural="openapispecs",
        kind="OpenAPISpec",
        status_subresource=True,
    )

    def spec(name: str, title: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": {"info": {"title": title}}}

    fake_apiserver.create(rtype, spec("a", "A1"), namespace="default")
    fake_apiserver.create(rtype, spec("b", "B1"), namespace="default")
    view: dict[str, Any] = {}
    batches: list[Batch] = []
    async with (
        crwatch.watch(crwatch_client, SPECS, namespace="default") as events,
        crwatch.pipe(
            events,
            crwatch.generation_changed(),
            crwatch.batch(max_items=10, max_wait=0.2, coalesce=True),
            crwatch.rate_limit(per_second=50, burst=1),
        ) as stream,
    ):
        with anyio.fail_after(5):
            async for b in stream:
                batches.append(b)
                apply(view, b, strict=True)
                if len(batches) == 1:
                    assert sorted(view) == ["default/a", "default/b"]
                    for title in ("A2", "A3"):
                        fake_apiserver.patch(
                            rtype,
                            "a",
                            {"spec": {"info": {"title": title}}},
                            namespace="default",
                        )
                    fake_apiserver.patch(
                        rtype, "b", {"status": {"ok": True}}, namespace="default", status=True
                    )
                    fake_apiserver.delete(rtype, "b", namespace="default")
                    fake_apiserver.create(rtype, spec("c", "C1"), namespace="default")
                    fake_apiserver.delete(rtype, "c", namespace="default")
                if view.keys() == {"default/a"} and (
                    view["default/a"]["spec"]["info"]["title"] == "A3"
                ):
                    break
    delivered = [e for b in batches for e in b]
    assert ("DELETED", "b") in summary(delivered)
    assert all(e.key != "default/c" for e in delivered)  # created and deleted in one window
    assert len(batches) <= 4
    no_tasks_left()


# --- end to end through an Informer --------------------------------------------------------


def register_specs(server: Any) -> Any:
    return server.register_crd(
        group="gateway.example.com",
        version="v1",
        plural="openapispecs",
        kind="OpenAPISpec",
        status_subresource=True,
    )


def spec_object(name: str, title: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"info": {"title": title}}}


def spec_view(server: Any, rtype: Any) -> dict[str, Any]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["spec"]
        for o in server.list(rtype)
    }


async def test_informer_subscriber_behind_middlewares(
    fake_apiserver: Any, crwatch_client: crwatch.Client
) -> None:
    """An Informer subscriber behind filters, coalescing batches and a rate limit.

    Its view converges to the server's objects (deletions included), status-only writes
    never reach it, it gets batches no larger than max_items, and a plain subscriber of the
    same informer is not held back by the slow (debounced) one.
    """
    rtype = register_specs(fake_apiserver)
    for i in range(6):
        fake_apiserver.create(rtype, spec_object(f"s{i}", "v0"), namespace="default")
    view: dict[str, Any] = {}
    calls: list[tuple[float, int]] = []
    plain: list[Event] = []

    def sync_gateway(b: Batch) -> None:
        calls.append((anyio.current_time(), len(b)))
        apply(view, b, strict=True)

    informer = crwatch.Informer(crwatch_client, SPECS)
    informer.subscribe(
        sync_gateway,
        crwatch.only("ADDED", "MODIFIED", "DELETED"),
        crwatch.generation_changed(),
        crwatch.batch(max_items=4, max_wait=0.05, coalesce=True),
        crwatch.rate_limit(per_second=40, burst=1),
    )
    informer.subscribe(lambda e: None, crwatch.debounce(quiet=60))  # holds everything
    informer.subscribe(plain.append)

    def converged() -> bool:
        return {k: v["spec"] for k, v in view.items()} == spec_view(fake_apiserver, rtype)

    async with informer:
        await informer.wait_synced(timeout=5)
        await until(converged)
        for i in range(3):
            for title in ("v1", "v2"):
                fake_apiserver.patch(
                    rtype, f"s{i}", {"spec": {"info": {"title": title}}}, namespace="default"
                )
        fake_apiserver.patch(
            rtype, "s5", {"status": {"ok": True}}, namespace="default", status=True
        )
        fake_apiserver.delete(rtype, "s4", namespace="default")
        await until(converged)
        assert any(e.key == "default/s5" and e.type is MODIFIED for e in plain)
    assert all(n <= 4 for _, n in calls)
    assert len(calls) < 6 + 6 + 1  # fewer calls than events
    assert within_rate([t for t, _ in calls], 40, 1 + 1)  # +1: delivery jitter
    no_tasks_left()


async def test_informer_stream_behind_middlewares(
    fake_apiserver: Any, crwatch_client: crwatch.Client
) -> None:
    """``informer.stream(where(...), batch(...))``: the stream yields what the last one yields."""
    rtype = register_specs(fake_apiserver)
    fake_apiserver.create(rtype, spec_object("mine", "a"), namespace="default")
    fake_apiserver.create(rtype, spec_object("system", "a"), namespace="kube-system")
    informer = crwatch.Informer(crwatch_client, SPECS)
    async with (
        informer,
        informer.stream(
            crwatch.where(lambda e: e.object["metadata"]["namespace"] != "kube-system"),
            crwatch.batch(max_items=10, max_wait=0.05),
        ) as batches,
    ):
        with anyio.fail_after(5):
            first = await batches.__anext__()
            assert summary(first) == [("ADDED", "mine")]
            fake_apiserver.delete(rtype, "system", namespace="kube-system")
            fake_apiserver.delete(rtype, "mine", namespace="default")
            second = await batches.__anext__()
            assert summary(second) == [("DELETED", "mine")]
    no_tasks_left()
