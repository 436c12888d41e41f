"""Tests of the sans-IO list/watch state machine: transitions and invariants."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from crwatch import (
    Backoff,
    CrwatchError,
    EventTooLargeError,
    ExpiredError,
    ForbiddenError,
    InvalidError,
    MalformedLineError,
    NotFoundError,
    ResourceVersionTooLargeError,
    ServerError,
    StallTimeout,
    TooManyRequestsError,
    TransportError,
    UnauthorizedError,
)
from crwatch._machine import (
    REQUESTS,
    Action,
    Collect,
    Config,
    Deliver,
    DiscardCollected,
    Failed,
    InitialDeadlinePassed,
    LineSkipped,
    ListPage,
    Observation,
    PageReceived,
    Phase,
    Raise,
    RelistDue,
    ReplaceAll,
    Sleep,
    SleepDone,
    Start,
    StartStreamingList,
    StartWatch,
    State,
    StreamEnded,
    WatchEvents,
    delivered,
    initial_state,
    step,
)
from crwatch._wire import RawEvent

BACKOFF = Backoff(initial=1.0, maximum=16.0, max_retry_after=60.0)


def _obj(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}


def _raw(kind: str, rv: str, *, end: bool = False) -> RawEvent:
    return RawEvent(kind, _obj("a", rv), rv, end)


def _ev(kind: str, rv: str, *, end: bool = False) -> WatchEvents:
    return WatchEvents((_raw(kind, rv, end=end),))


def _run(state: State, *observations: Observation, now: float = 0.0) -> tuple[State, list[Action]]:
    actions: list[Action] = []
    for obs in observations:
        state, new = step(state, obs, now)
        actions.extend(new)
    return state, actions


def _gone() -> ExpiredError:
    return ExpiredError("too old resource version", code=410, reason="Expired")


def test_streaming_list_collects_until_the_end_bookmark_then_watches_on() -> None:
    """Streaming list: ADDED are collected, the end bookmark replaces, the stream goes on."""
    state = initial_state(Config(backoff=BACKOFF), seed=1)
    state, acts = _run(state, Start())
    (start,) = acts
    assert isinstance(start, StartStreamingList)
    assert start.resource_version == ""
    assert 300 <= start.timeout_seconds < 600
    assert start.deadline == 30.0
    state, acts = _run(state, _ev("ADDED", "5"), _ev("BOOKMARK", "9", end=True))
    assert [type(a) for a in acts] == [Collect, ReplaceAll]
    assert acts[1] == ReplaceAll("9")
    assert state.phase is Phase.WATCHING
    assert state.synced
    state, acts = _run(state, _ev("MODIFIED", "11"))
    assert [type(a) for a in acts] == [Deliver]
    assert state.resource_version == "11"


@pytest.mark.parametrize(
    "failure",
    [
        Failed(InvalidError("sendInitialEvents forbidden", code=422)),
        InitialDeadlinePassed(),
        StreamEnded(),
        _ev("MODIFIED", "3"),
    ],
)
def test_streaming_list_falls_back_to_a_paginated_list(failure: Observation) -> None:
    """422, a missed deadline, an early end or a live event before the marker: paginated list."""
    state = initial_state(Config(backoff=BACKOFF, page_size=500), seed=1)
    state, acts = _run(state, Start(), _ev("ADDED", "1"), failure)
    assert acts[-2:] == [DiscardCollected(), ListPage("", None, 500)]
    assert not state.streaming
    assert state.phase is Phase.LISTING


def test_pagination_then_watch_from_the_list_rv() -> None:
    """Pages are collected; the last one replaces the cache and starts the watch at its RV."""
    state = initial_state(Config(streaming_list=False, page_size=2), seed=3)
    state, acts = _run(state, Start())
    assert acts == [ListPage("", None, 2)]
    state, acts = _run(state, PageReceived([_obj("a", "1"), _obj("b", "2")], "7", "tok"))
    assert acts[1] == ListPage("", "tok", 2)
    state, acts = _run(state, PageReceived([_obj("c", "3")], "7", None))
    assert [type(a) for a in acts] == [Collect, ReplaceAll, StartWatch]
    watch = acts[2]
    assert isinstance(watch, StartWatch)
    assert watch.resource_version == "7"


def test_expired_continue_token_falls_back_to_one_full_list() -> None:
    """410 on a page after the first: drop the pages, list everything without a limit."""
    state = initial_state(Config(streaming_list=False), seed=3)
    state, _ = _run(state, Start(), PageReceived([_obj("a", "1")], "7", "tok"))
    state, acts = _run(state, Failed(_gone()))
    assert acts == [DiscardCollected(), ListPage("", None, None)]


def _watching(config: Config | None = None) -> State:
    state = initial_state(config or Config(streaming_list=False, backoff=BACKOFF), seed=5)
    state, _ = _run(state, Start(), PageReceived([], "10", None))
    assert state.phase is Phase.WATCHING
    return state


def test_clean_end_rewatches_at_once_from_the_last_rv() -> None:
    """A clean close after progress re-watches immediately from the last RV (bookmarks too)."""
    state = _watching()
    state, acts = _run(state, _ev("BOOKMARK", "15"), StreamEnded(), now=5.0)
    (watch,) = acts
    assert isinstance(watch, StartWatch)
    assert watch.resource_version == "15"


def test_very_short_empty_watch_backs_off() -> None:
    """A watch that ends at once with nothing delivered is retried after a backoff."""
    state = _watching()
    state, acts = _run(state, StreamEnded(), now=0.5)
    (sleep,) = acts
    assert isinstance(sleep, Sleep)
    assert state.resume is Phase.WATCHING


def test_expired_watch_relists() -> None:
    """410 on a watch that delivered something relists right away."""
    state = _watching()
    state, acts = _run(state, _ev("ADDED", "11"), Failed(_gone()))
    assert acts[-1] == ListPage("", None, 500)


def test_retry_after_is_honoured() -> None:
    """429 with Retry-After sleeps exactly that long, then retries the watch."""
    state = _watching()
    err = TooManyRequestsError("slow down", code=429, retry_after=7.0)
    state, acts = _run(state, Failed(err), now=100.0)
    assert acts == [Sleep(107.0)]
    state, acts = _run(state, SleepDone(), now=107.0)
    assert isinstance(acts[0], StartWatch)


@pytest.mark.parametrize("cls", [UnauthorizedError, ForbiddenError, NotFoundError])
def test_auth_errors_raise_or_retry_slowly(cls: type[CrwatchError]) -> None:
    """401/403/404 raise by default; with on_auth_error="retry" they sleep at the slowest pace."""
    err = cls("no", code=403)  # type: ignore[call-arg]
    state, acts = _run(_watching(), Failed(err))
    assert acts == [Raise(err)]
    assert state.phase is Phase.FAILED
    retry = Config(streaming_list=False, backoff=BACKOFF, on_auth_error="retry")
    state, acts = _run(_watching(retry), Failed(err), now=0.0)
    (sleep,) = acts
    assert isinstance(sleep, Sleep)
    assert BACKOFF.maximum / 2 <= sleep.until <= BACKOFF.maximum


def test_a_batch_runs_through_phases_in_order() -> None:
    """One batch may end the initial events, carry changes, then fail: handled in order."""
    state = initial_state(Config(backoff=BACKOFF), seed=1)
    state, _ = _run(state, Start())
    gone = RawEvent("ERROR", {"kind": "Status", "code": 410, "reason": "Expired"}, "")
    batch = WatchEvents(
        (
            _raw("ADDED", "3"),
            _raw("BOOKMARK", "9", end=True),
            _raw("MODIFIED", "10"),
            _raw("DELETED", "11"),
            gone,
            _raw("MODIFIED", "12"),  # after the error: ignored
        )
    )
    state, acts = _run(state, batch, now=2.0)
    assert [type(a) for a in acts] == [Collect, ReplaceAll, Deliver, StartStreamingList]
    deliver = acts[2]
    assert isinstance(deliver, Deliver)
    assert [e.resource_version for e in deliver.events] == ["10", "11"]
    assert state.resource_version == "11"
    assert state.phase is Phase.STREAMING_LIST


def test_unexpected_observation_is_a_driver_bug() -> None:
    """An observation that cannot happen in the phase raises RuntimeError."""
    with pytest.raises(RuntimeError):
        step(initial_state(Config(), seed=0), SleepDone(), 0.0)


def test_seeded_randomness_is_deterministic() -> None:
    """The same seed gives the same watch timeouts and jitter."""
    a = _run(_watching(), StreamEnded(), now=9.0)
    b = _run(_watching(), StreamEnded(), now=9.0)
    assert a == b


# --- the fast path and skipped lines ------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
            st.integers(min_value=1, max_value=10**6).map(str) | st.just(""),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_fast_path_of_changes_matches_step(changes: list[tuple[str, str]]) -> None:
    """While watching, a batch of changes steps to one Deliver and ``delivered(state, RV)``.

    That is the driver's fast path: stepping them one by one gives the same state.
    """
    state = _watching()
    raws = tuple(_raw(kind, rv) for kind, rv in changes)
    stepped, actions = step(state, WatchEvents(raws), 3.0)
    assert actions == (Deliver(raws),)
    last = next((rv for _, rv in reversed(changes) if rv), "")
    assert stepped == delivered(state, last)
    one_by_one = state
    for raw in raws:
        one_by_one, _ = step(one_by_one, WatchEvents((raw,)), 3.0)
    assert one_by_one == stepped


def test_fast_path_of_initial_events_matches_step() -> None:
    """During a streaming list an ADDED is one Collect of its object, the state unchanged."""
    state, _ = _run(initial_state(Config(backoff=BACKOFF), seed=1), Start())
    raw = _raw("ADDED", "3")
    new, actions = step(state, WatchEvents((raw,)), 1.0)
    assert new == state
    assert actions == (Collect((raw.object,)),)


def _skipped() -> LineSkipped:
    return LineSkipped(MalformedLineError("watch line is not JSON", line=b"{"))


def test_skipped_line_schedules_one_relist_after_a_backoff() -> None:
    """A skipped line while watching schedules one relist within the backoff.

    The stream goes on; more skips before it is due do not move it; once due, a fresh list
    starts and the schedule is cleared.
    """
    state = _watching()
    state, acts = _run(state, _skipped(), now=100.0)
    assert acts == []
    assert state.phase is Phase.WATCHING
    assert state.relist_at is not None
    assert 100.0 <= state.relist_at <= 100.0 + BACKOFF.cap(0)
    due = state.relist_at
    state, acts = _run(state, LineSkipped(EventTooLargeError("big", size=9, limit=1)), now=100.1)
    assert acts == []
    assert state.relist_at == due
    # Changes keep flowing until the relist is due.
    state, acts = _run(state, _ev("MODIFIED", "12"), now=100.2)
    assert acts == [Deliver((_raw("MODIFIED", "12"),))]
    if due > 100.2:
        state, acts = _run(state, RelistDue(), now=100.2)
        assert acts == []
    state, acts = _run(state, RelistDue(), now=due)
    assert acts == [ListPage("", None, 500)]
    assert state.relist_at is None


def test_relists_for_skipped_lines_back_off_until_a_clean_watch() -> None:
    """Each relist a skip causes raises the next one's backoff cap.

    So a proxy that corrupts every watch cannot drive a relist loop; a watch that ends
    cleanly without a skip starts the count over.
    """
    state = _watching()
    now = 0.0
    for n in range(4):
        state, _ = _run(state, _skipped(), now=now)
        assert state.resyncs == n + 1
        assert state.relist_at is not None
        assert state.relist_at - now <= BACKOFF.cap(n) + 1e-9
        now = state.relist_at
        state, _ = _run(state, RelistDue(), PageReceived([], str(20 + n), None), now=now)
        assert state.phase is Phase.WATCHING
    state, acts = _run(state, _ev("BOOKMARK", "30"), StreamEnded(), now=now + 300)
    assert isinstance(acts[-1], StartWatch)
    assert state.resyncs == 0


def test_watch_failures_grow_the_backoff_while_lists_succeed() -> None:
    """Consecutive failed watches (after a good list) back off ever longer, up to the cap.

    Regression (a surviving mutation): resetting the attempt count whenever a watch starts
    kept every retry under the first cap (0.8 s by default) while the list kept succeeding.
    Only a watch that delivers, or a complete list, is progress.
    """
    state = _watching()
    now = 0.0
    sleeps: list[float] = []
    for n in range(8):
        state, acts = _run(state, Failed(ServerError("boom", code=500)), now=now)
        (sleep,) = acts
        assert isinstance(sleep, Sleep)
        assert state.attempt == n + 1
        assert sleep.until - now <= BACKOFF.cap(n) + 1e-9
        sleeps.append(sleep.until - now)
        now = sleep.until
        state, acts = _run(state, SleepDone(), now=now)
        assert isinstance(acts[0], StartWatch)  # the watch is retried, no relist
    assert max(sleeps) > BACKOFF.cap(1)
    # A watch that delivers is progress: the next failure starts from the first cap again.
    state, _ = _run(state, _ev("MODIFIED", "11"), now=now)
    state, acts = _run(state, Failed(ServerError("boom", code=500)), now=now)
    assert state.attempt == 1
    (sleep,) = acts
    assert isinstance(sleep, Sleep)
    assert sleep.until - now <= BACKOFF.cap(0)


def test_clean_watch_end_keeps_the_skip_backoff_while_a_relist_is_pending() -> None:
    """A watch that ends cleanly while a skip's relist is pending keeps the skip count.

    Regression (a surviving mutation): starting the count over on every clean end let a
    proxy that corrupts a line per watch relist at the first backoff forever. The count
    starts over only at a clean end with no relist pending.
    """
    state = _watching()
    state, _ = _run(state, _skipped(), now=0.0)
    state, _ = _run(state, RelistDue(), PageReceived([], "20", None), now=state.relist_at or 0.0)
    assert state.resyncs == 1
    state, _ = _run(state, _skipped(), now=1.0)
    pending = state.relist_at
    assert pending is not None
    assert state.resyncs == 2
    # The stream ends cleanly after progress, before the relist is due: a plain re-watch.
    state, acts = _run(state, _ev("BOOKMARK", "21"), now=1.0)
    if pending > 1.0:
        state, acts = _run(state, StreamEnded(), now=min(pending, 2.0) - 1e-6)
        assert isinstance(acts[-1], StartWatch)
        assert state.relist_at == pending
        assert state.resyncs == 2
    # The third skip's relist waits up to the third cap, not the first.
    state, _ = _run(state, RelistDue(), PageReceived([], "22", None), now=pending)
    state, _ = _run(state, _skipped(), now=50.0)
    assert state.resyncs == 3
    assert state.relist_at is not None
    assert state.relist_at - 50.0 <= BACKOFF.cap(2) + 1e-9


def test_clean_end_with_a_relist_pending_keeps_the_count_at_any_seed() -> None:
    """Whatever the jitter, a clean end before a pending relist does not reset the count."""
    for seed in range(20):
        state = initial_state(Config(streaming_list=False, backoff=BACKOFF), seed=seed)
        state, _ = _run(state, Start(), PageReceived([], "10", None))
        state, _ = _run(state, _ev("MODIFIED", "11"), _skipped(), now=0.0)
        assert state.relist_at is not None
        # Force "not due yet" by ending the stream at the very start of the schedule.
        state = attrs.evolve(state, relist_at=1e9)
        state, acts = _run(state, StreamEnded(), now=10.0)
        assert isinstance(acts[-1], StartWatch)
        assert (state.resyncs, state.relist_at) == (1, 1e9)


def test_due_relist_wins_over_a_rewatch() -> None:
    """A relist due when the watch ends, or when a backoff ends, replaces the re-watch."""
    state, _ = _run(_watching(), _ev("MODIFIED", "11"), _skipped(), now=10.0)
    assert state.relist_at is not None
    late = state.relist_at + 1
    _, acts = _run(state, StreamEnded(), now=late)
    assert acts == [ListPage("", None, 500)]
    backing, acts = _run(state, Failed(TransportError("reset")), now=late)
    assert backing.phase is Phase.BACKING_OFF
    _, acts = _run(backing, SleepDone(), now=late + 100)
    assert acts == [ListPage("", None, 500)]


def test_skipped_line_in_a_streaming_list_restarts_the_list_after_a_backoff() -> None:
    """A skip in a streaming list discards it; a paginated list starts after a backoff.

    The snapshot may miss an object; a list response has no per-line limit.
    """
    state, _ = _run(initial_state(Config(backoff=BACKOFF), seed=1), Start())
    skipped = _skipped()
    state, acts = _run(state, _ev("ADDED", "3"), skipped, now=1.0)
    assert isinstance(acts[0], Collect)
    assert isinstance(acts[1], DiscardCollected)
    sleep = acts[2]
    assert isinstance(sleep, Sleep)
    assert sleep.error is skipped.error  # the driver logs why it waits
    assert (state.phase, state.resume, state.streaming) == (
        Phase.BACKING_OFF,
        Phase.LISTING,
        False,
    )
    _, acts = _run(state, SleepDone(), now=100.0)
    assert acts == [ListPage("", None, 500)]


# --- stateful invariants -------------------------------------------------------------------

_errors = st.sampled_from(
    [
        lambda: ExpiredError("gone", code=410),
        lambda: ResourceVersionTooLargeError("too large", code=504),
        lambda: TooManyRequestsError("slow", code=429, retry_after=3.0),
        lambda: TooManyRequestsError("slow", code=429),
        lambda: ServerError("boom", code=500),
        lambda: ServerError("unavailable", code=503, retry_after=1000.0),
        lambda: TransportError("reset"),
        lambda: StallTimeout("stalled"),
        lambda: ForbiddenError("no", code=403),
        lambda: InvalidError("bad", code=422),
    ]
)
_rvs = st.integers(min_value=1, max_value=10**6).map(str) | st.just("")


class MachineInvariants(RuleBasedStateMachine):
    """Drive the machine with any valid sequence of observations and check its promises."""

    def __init__(self) -> None:
        super().__init__()
        self.state = initial_state(Config(streaming_list=True, backoff=BACKOFF), seed=0)
        self.now = 0.0
        self.expect_list = False
        self.expect_progress_reset = False

    @initialize(
        streaming=st.booleans(),
        policy=st.sampled_from(["raise", "retry"]),
        seed=st.integers(min_value=0, max_value=2**64 - 1),
    )
    def start(self, streaming: bool, policy: Any, seed: int) -> None:
        config = Config(streaming_list=streaming, backoff=BACKOFF, on_auth_error=policy)
        self.state = initial_state(config, seed)
        self.feed(Start())

    def feed(self, obs: Observation) -> None:
        before = self.state
        self.state, actions = step(before, obs, self.now)
        starts = [a for a in actions if isinstance(a, (*REQUESTS, Sleep, Raise))]
        # One observation leads to at most one new request, sleep or raise.
        assert len(starts) <= 1, actions
        for action in actions:
            if isinstance(action, StartWatch):
                assert action.resource_version, "watch from an empty RV after the sync"
                assert self.state.synced
            if isinstance(action, Sleep):
                assert (
                    -1e-9
                    <= action.until - self.now
                    <= max(BACKOFF.maximum, BACKOFF.max_retry_after) + 1e-9
                )
                retry_after = getattr(action.error, "retry_after", None)
                if retry_after is None and self.state.attempt > before.attempt:
                    assert action.until - self.now <= BACKOFF.cap(before.attempt) + 1e-9
            if isinstance(action, (ReplaceAll, Deliver)):
                self.expect_progress_reset = True
        if self.expect_list and starts and not isinstance(starts[0], (Sleep, Raise)):
            first = starts[0]
            assert isinstance(first, StartStreamingList) or (
                isinstance(first, ListPage) and first.continue_token is None
            ), f"a 410 must lead to a fresh list, got {first}"
            self.expect_list = False
        if self.expect_progress_reset:
            assert self.state.attempt == 0
            self.expect_progress_reset = False
        # Backoff grows during an outage: each failure-driven sleep counts one more attempt
        # (auth errors under the "retry" policy sleep at the slowest pace instead).
        if (
            isinstance(obs, Failed)
            and self.state.phase is Phase.BACKING_OFF
            and not isinstance(obs.error, ForbiddenError)
        ):
            assert self.state.attempt == before.attempt + 1

    @rule(dt=st.floats(min_value=0, max_value=50))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: self.state.phase is Phase.BACKING_OFF)
    @rule()
    def sleep_done(self) -> None:
        self.feed(SleepDone())

    @precondition(lambda self: self.state.phase in (Phase.STREAMING_LIST, Phase.WATCHING))
    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "END", "ERROR"]),
                _rvs,
            ),
            min_size=1,
            max_size=4,
        )
    )
    def watch_events(self, batch: list[tuple[str, str]]) -> None:
        events = []
        for kind, rv in batch:
            if kind == "ERROR":
                status = {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired"}
                events.append(RawEvent("ERROR", status, ""))
            else:
                events.append(_raw("BOOKMARK" if kind == "END" else kind, rv, end=kind == "END"))
        if any(e.type == "ERROR" for e in events):
            # Only if the batch gets that far in a phase that still reads the stream; the
            # check in feed() tolerates a relist that starts earlier for other reasons.
            self.expect_list = self._reaches_error(events)
        self.feed(WatchEvents(events))

    def _reaches_error(self, events: list[RawEvent]) -> bool:
        state = self.state
        for event in events:
            if state.phase not in (Phase.WATCHING, Phase.STREAMING_LIST):
                return False
            if event.type == "ERROR":
                return True
            state, _ = step(state, WatchEvents((event,)), self.now)
        return False

    @precondition(lambda self: self.state.phase is Phase.STREAMING_LIST)
    @rule(rv=_rvs)
    def end_bookmark(self, rv: str) -> None:
        self.feed(_ev("BOOKMARK", rv, end=True))

    @precondition(lambda self: self.state.phase in (Phase.STREAMING_LIST, Phase.WATCHING))
    @rule()
    def line_skipped(self) -> None:
        before = self.state
        self.feed(_skipped())
        if before.phase is Phase.WATCHING and before.relist_at is None:
            assert self.state.relist_at is not None
            assert self.state.relist_at - self.now <= BACKOFF.cap(before.resyncs) + 1e-9

    @precondition(lambda self: self.state.phase is Phase.WATCHING)
    @rule()
    def relist_due(self) -> None:
        due = self.state.relist_at is not None and self.now >= self.state.relist_at
        self.expect_list = self.expect_list or due
        self.feed(RelistDue())
        if due:
            assert self.state.phase in (Phase.LISTING, Phase.STREAMING_LIST)

    @precondition(lambda self: self.state.phase in (Phase.STREAMING_LIST, Phase.WATCHING))
    @rule()
    def stream_ended(self) -> None:
        self.feed(StreamEnded())

    @precondition(lambda self: self.state.phase is Phase.STREAMING_LIST)
    @rule()
    def deadline(self) -> None:
        self.feed(InitialDeadlinePassed())

    @precondition(lambda self: self.state.phase is Phase.LISTING)
    @rule(rv=_rvs, more=st.booleans(), n=st.integers(min_value=0, max_value=3))
    def page(self, rv: str, more: bool, n: int) -> None:
        items = [_obj(f"o{i}", "1") for i in range(n)]
        self.feed(PageReceived(items, rv, "tok" if more else None))

    @precondition(
        lambda self: self.state.phase in (Phase.STREAMING_LIST, Phase.LISTING, Phase.WATCHING)
    )
    @rule(make=_errors)
    def failure(self, make: Any) -> None:
        error = make()
        if isinstance(error, (ExpiredError, ResourceVersionTooLargeError)):
            self.expect_list = True
        self.feed(Failed(error))

    @precondition(lambda self: self.state.phase is Phase.WATCHING)
    @rule()
    def error_event_410(self) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired"}
        self.expect_list = True
        self.feed(WatchEvents((RawEvent("ERROR", status, ""),)))

    @invariant()
    def a_list_clears_the_scheduled_relist(self) -> None:
        if self.state.phase in (Phase.LISTING, Phase.STREAMING_LIST):
            assert self.state.relist_at is None

    @invariant()
    def synced_state_has_an_rv(self) -> None:
        if self.state.synced:
            assert self.state.resource_version


MachineInvariants.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
TestMachineInvariants = MachineInvariants.TestCase


# --- exact effects of each transition (each pins a behaviour a mutation once slipped past) ---

STREAMING = Config(streaming_list=True, backoff=BACKOFF, watch_timeout=(300, 600))


def _status_event(code: int, reason: str) -> RawEvent:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "code": code}
    return RawEvent("ERROR", {**status, "reason": reason, "message": f"m{code}"}, "", False)


def test_randomness_is_splitmix64() -> None:
    """Jitter and timeouts come from splitmix64: its published outputs for seed 0.

    Reference values from Sebastiano Vigna's splitmix64.c (https://prng.di.unimi.it/);
    the top 53 bits of each output make the uniform value.
    """
    from crwatch._machine import _random

    seed = 0
    for expected in (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F):
        u, seed = _random(seed)
        assert u == (expected >> 11) / 2**53
    assert seed == (3 * 0x9E3779B97F4A7C15) & (2**64 - 1)


def test_initial_state_knows_nothing_yet() -> None:
    """Before Start: no version, not synced, no failures, nothing started; the seed is 64-bit."""
    state = initial_state(Config(), seed=-1)
    assert state.phase is Phase.INITIAL
    assert state.resume is Phase.INITIAL
    assert state.resource_version == ""
    assert state.synced is False
    assert state.watch_progress is False
    assert state.watch_started == 0.0
    assert (state.attempt, state.resyncs, state.relist_at) == (0, 0, None)
    assert state.streaming is True
    assert state.seed == 2**64 - 1
    assert initial_state(Config(), seed=2**64 + 5).seed == 5


def test_a_single_watch_event_is_a_batch_of_one() -> None:
    """WatchEvent(e) is handled exactly as WatchEvents((e,))."""
    from crwatch._machine import WatchEvent

    state = _watching()
    raw = _raw("MODIFIED", "12")
    assert step(state, WatchEvent(raw), 3.0) == step(state, WatchEvents((raw,)), 3.0)


@pytest.mark.parametrize("phase_of", ["initial", "backing_off"])
def test_a_failure_with_no_request_in_flight_is_a_driver_bug(phase_of: str) -> None:
    """Failed while nothing was requested (INITIAL, BACKING_OFF) raises, naming both."""
    state = initial_state(Config(streaming_list=False, backoff=BACKOFF), seed=1)
    if phase_of == "backing_off":
        state, _ = _run(_watching(), Failed(TransportError("x")))
    with pytest.raises(RuntimeError) as info:
        step(state, Failed(TransportError("x")), 0.0)
    assert str(info.value) == f"Failed cannot happen in phase {state.phase.name}"
    with pytest.raises(RuntimeError, match="PageReceived cannot happen in phase"):
        step(state, PageReceived([], "1"), 0.0)


def test_a_watch_is_very_short_only_within_a_second_of_its_start() -> None:
    """An empty watch that ends less than 1 s after it started backs off; later, it re-watches."""
    state, acts = _run(_watching(), _ev("BOOKMARK", "11"), StreamEnded(), now=100.0)
    (watch,) = acts
    assert isinstance(watch, StartWatch)
    assert state.watch_started == 100.0
    assert state.watch_progress is False
    assert 300 <= watch.timeout_seconds < 600
    short, acts = _run(state, StreamEnded(), now=100.5)
    assert isinstance(acts[0], Sleep)
    assert short.resume is Phase.WATCHING
    _, acts = _run(state, StreamEnded(), now=101.0)
    assert isinstance(acts[0], StartWatch)


def test_watch_timeouts_span_the_configured_range() -> None:
    """TimeoutSeconds is drawn from [low, high); a range of one value gives that value."""
    seen = set()
    state = _watching(Config(streaming_list=False, backoff=BACKOFF, watch_timeout=(10, 14)))
    for i in range(200):
        state, acts = _run(state, _ev("BOOKMARK", str(20 + i)), StreamEnded(), now=10.0 * i + 5)
        (watch,) = acts
        assert isinstance(watch, StartWatch)
        seen.add(watch.timeout_seconds)
    assert seen == {10, 11, 12, 13}
    fixed = _watching(Config(streaming_list=False, backoff=BACKOFF, watch_timeout=(7, 7)))
    _, acts = _run(fixed, _ev("BOOKMARK", "12"), StreamEnded(), now=5.0)
    assert acts == [StartWatch("12", 7)]


def test_a_due_relist_restarts_a_streaming_list_with_a_fresh_deadline() -> None:
    """A relist due at a clean end opens a streaming list: deadline from now, nothing yet."""
    state = initial_state(STREAMING, seed=3)
    state, _ = _run(state, Start(), _ev("BOOKMARK", "10", end=True), now=0.0)
    assert state.phase is Phase.WATCHING
    state, _ = _run(state, _ev("MODIFIED", "11"), _skipped(), now=1.0)
    due = state.relist_at
    assert due is not None
    state, acts = _run(state, StreamEnded(), now=due + 2)
    (start,) = acts
    assert isinstance(start, StartStreamingList)
    assert start.deadline == due + 2 + STREAMING.initial_list_deadline
    assert (state.phase, state.watch_started, state.watch_progress) == (
        Phase.STREAMING_LIST,
        due + 2,
        False,
    )
    assert state.relist_at is None
    # A relist due exactly now is due, whether the stream ends or the timer fires then;
    # each streaming list draws its own timeout (the seed moves on).
    before = state.seed
    state, _ = _run(state, _ev("BOOKMARK", "12", end=True), _skipped(), now=50.0)
    at = state.relist_at
    assert at is not None
    _, acts = _run(state, RelistDue(), now=at)
    assert isinstance(acts[0], StartStreamingList)
    progressed, _ = _run(state, _ev("MODIFIED", "13"), now=at)
    relisting, acts = _run(progressed, StreamEnded(), now=at)
    assert isinstance(acts[0], StartStreamingList)
    assert relisting.seed != progressed.seed != before


def test_the_end_bookmark_completes_the_initial_state() -> None:
    """The initial-events-end bookmark: synced, progress, failures forgotten, same stream."""
    state = initial_state(STREAMING, seed=3)
    state, _ = _run(state, Start(), Failed(TransportError("x")), now=0.0)
    state, _ = _run(state, SleepDone(), now=5.0)
    assert state.attempt == 1
    assert state.last_error is not None
    state, acts = _run(state, _ev("ADDED", "3"), _ev("BOOKMARK", "9", end=True), now=6.0)
    assert acts == [Collect((_obj("a", "3"),)), ReplaceAll("9")]
    assert (state.phase, state.synced, state.watch_progress) == (Phase.WATCHING, True, True)
    assert (state.attempt, state.last_error, state.resource_version) == (0, None, "9")


@pytest.mark.parametrize(
    "event",
    [
        RawEvent("BOOKMARK", {"metadata": {}}, "", True),  # an end bookmark with no RV
        _raw("MODIFIED", "5"),  # an old server ignoring sendInitialEvents
    ],
)
def test_a_streaming_list_that_cannot_be_trusted_falls_back(event: RawEvent) -> None:
    """Fallback to paginated lists for good: the collected part is discarded."""
    state = initial_state(STREAMING, seed=3)
    state, acts = _run(state, Start(), WatchEvents((_raw("ADDED", "1"), event)), now=2.0)
    assert acts[-2:] == [DiscardCollected(), ListPage("", None, 500)]
    assert (state.phase, state.streaming) == (Phase.LISTING, False)
    # Later relists are paginated too.
    state, acts = _run(state, PageReceived([], "10"), _gone_event(), now=3.0)
    assert acts[-1] == ListPage("", None, 500)


def _gone_event() -> WatchEvents:
    return WatchEvents((_raw("MODIFIED", "11"), _status_event(410, "Expired")))


@pytest.mark.parametrize("where", ["streaming", "watching"])
def test_an_error_event_becomes_a_typed_failure(where: str) -> None:
    """An ERROR event is the failure its Status says, recorded as a watch error."""
    if where == "streaming":
        state, _ = _run(initial_state(STREAMING, seed=3), Start(), now=0.0)
    else:
        state = _watching()
    state, acts = _run(state, WatchEvents((_status_event(500, "InternalError"),)), now=10.0)
    error = state.last_error
    assert isinstance(error, ServerError)
    assert (error.code, error.verb, error.message) == (500, "watch", "m500")
    sleep = acts[-1]
    assert isinstance(sleep, Sleep)
    assert sleep.error is error
    assert state.phase is Phase.BACKING_OFF
    assert state.resume is (Phase.LISTING if where == "streaming" else Phase.WATCHING)


def test_progress_on_a_watch_forgets_the_failures() -> None:
    """A bookmark or a change after failures resets the attempt count and the last error."""
    state = _watching()
    state, _ = _run(state, Failed(TransportError("x")), SleepDone(), now=0.0)
    assert (state.attempt, state.last_error is not None) == (1, True)
    marked, _ = _run(state, _ev("BOOKMARK", "20"), now=1.0)
    assert (marked.attempt, marked.last_error, marked.watch_progress) == (0, None, True)
    changed, acts = _run(state, _ev("DELETED", "21"), now=1.0)
    assert (changed.attempt, changed.last_error, changed.resource_version) == (0, None, "21")
    assert acts == [Deliver((_raw("DELETED", "21"),))]
    # A change without a resourceVersion keeps the last one.
    kept = delivered(changed, "")
    assert kept.resource_version == "21"
    nameless, _ = _run(changed, WatchEvents((RawEvent("MODIFIED", _obj("a", ""), "", False),)))
    assert nameless.resource_version == "21"


def test_a_list_page_without_a_resource_version_is_a_server_error() -> None:
    """A last page without metadata.resourceVersion cannot start a watch: it is a failure."""
    state = initial_state(Config(streaming_list=False, backoff=BACKOFF), seed=1)
    state, acts = _run(state, Start(), PageReceived([_obj("a", "1")], ""), now=4.0)
    error = state.last_error
    assert isinstance(error, ServerError)
    assert (error.code, error.verb) == (200, "list")
    assert error.message == "list response has no metadata.resourceVersion"
    assert acts[-2] == DiscardCollected()
    sleep = acts[-1]
    assert isinstance(sleep, Sleep)
    assert sleep.error is error
    assert (state.phase, state.resume) == (Phase.BACKING_OFF, Phase.LISTING)


def test_the_last_page_syncs_and_forgets_failures() -> None:
    """The last page: no empty Collect, the list RV, no continue token, failures forgotten."""
    state = initial_state(Config(streaming_list=False, backoff=BACKOFF), seed=1)
    state, _ = _run(state, Start(), Failed(TransportError("x")), SleepDone(), now=0.0)
    state, acts = _run(state, PageReceived([_obj("a", "1")], "5", "tok"), now=1.0)
    assert acts == [Collect([_obj("a", "1")]), ListPage("", "tok", 500)]
    assert state.continue_token == "tok"
    state, acts = _run(state, PageReceived([], "5", None), now=2.0)
    assert acts[0] == ReplaceAll("5")
    assert isinstance(acts[1], StartWatch)
    assert len(acts) == 2
    assert (state.synced, state.continue_token, state.attempt, state.last_error) == (
        True,
        None,
        0,
        None,
    )


@pytest.mark.parametrize("phase_of", ["listing", "watching"])
def test_auth_errors_retried_slowly_resume_what_failed(phase_of: str) -> None:
    """With on_auth_error="retry", a 403 sleeps at the slowest pace, then retries the same."""
    retry = Config(streaming_list=False, backoff=BACKOFF, on_auth_error="retry")
    if phase_of == "watching":
        state = _watching(retry)
    else:
        state, _ = _run(initial_state(retry, seed=5), Start())
    err = ForbiddenError("no", code=403)
    new, acts = _run(state, Failed(err), now=10.0)
    sleep = acts[-1]
    assert isinstance(sleep, Sleep)
    assert sleep.error is err
    assert 10.0 + BACKOFF.maximum / 2 <= sleep.until <= 10.0 + BACKOFF.maximum
    assert new.phase is Phase.BACKING_OFF
    assert new.resume is (Phase.WATCHING if phase_of == "watching" else Phase.LISTING)
    assert new.seed != state.seed
    assert new.last_error is err


def test_bad_request_outside_a_streaming_list_stops() -> None:
    """400/422 on a paginated list or a watch is raised: retrying cannot fix a bad request."""
    err = InvalidError("bad selector", code=422)
    for state in (_watching(), _run(initial_state(Config(streaming_list=False), 1), Start())[0]):
        new, acts = _run(state, Failed(err), now=1.0)
        assert new.phase is Phase.FAILED
        assert new.last_error is err
        raised = acts[-1]
        assert isinstance(raised, Raise)
        assert raised.error is err
    # In a streaming list it means "not supported": fall back, with a fresh deadline.
    state, _ = _run(initial_state(STREAMING, seed=3), Start(), now=0.0)
    new, acts = _run(state, Failed(err), now=7.0)
    assert acts == [DiscardCollected(), ListPage("", None, 500)]
    assert (new.phase, new.streaming) == (Phase.LISTING, False)


def test_expired_while_listing_without_a_token_backs_off_then_relists() -> None:
    """410 on a first page (no continue token) relists after a backoff, never at once."""
    state, _ = _run(initial_state(Config(streaming_list=False, backoff=BACKOFF), 1), Start())
    err = _gone()
    new, acts = _run(state, Failed(err), now=3.0)
    assert acts[0] == DiscardCollected()
    sleep = acts[1]
    assert isinstance(sleep, Sleep)
    assert sleep.error is err
    assert (new.phase, new.resume, new.continue_token) == (Phase.BACKING_OFF, Phase.LISTING, None)
    # The same from a watch that delivered nothing: no tight relist loop.
    quiet, acts = _run(_watching(), Failed(err), now=3.0)
    assert isinstance(acts[0], Sleep)
    assert acts[0].error is err
    assert (quiet.phase, quiet.resume) == (Phase.BACKING_OFF, Phase.LISTING)
    # An expired continue token drops the token for the full list.
    paged, _ = _run(state, PageReceived([_obj("a", "1")], "7", "tok"))
    paged, _ = _run(paged, Failed(err))
    assert paged.continue_token is None


def test_other_failures_back_off_and_keep_what_to_resume() -> None:
    """A 500 while listing backs off, discards the pages and relists; no token survives."""
    state, _ = _run(initial_state(Config(streaming_list=False, backoff=BACKOFF), 1), Start())
    state, _ = _run(state, PageReceived([_obj("a", "1")], "7", "tok"))
    err = ServerError("boom", code=500)
    new, acts = _run(state, Failed(err), now=2.0)
    assert acts[0] == DiscardCollected()
    assert isinstance(acts[1], Sleep)
    assert acts[1].error is err
    assert (new.resume, new.continue_token, new.attempt) == (Phase.LISTING, None, 1)
    assert new.seed != state.seed


def test_skip_schedules_use_fresh_randomness() -> None:
    """Each scheduled relist draws a new jitter value (the seed moves on)."""
    state = _watching()
    new, _ = _run(state, _skipped(), now=0.0)
    assert new.seed != state.seed


def test_a_watch_silent_from_its_start_relists_after_its_stall() -> None:
    """A stall on a watch that delivered nothing (not even a bookmark) ends in a relist.

    kube-apiserver keeps a watch from a resourceVersion it has not reached silent (after a
    restore to an older state): resuming from it would stay silent forever. A watch that
    delivered something and then went quiet resumes as usual.
    """
    state = _watching()
    stall = StallTimeout("no byte for 90 s")
    silent, acts = _run(state, Failed(stall), now=100.0)
    assert isinstance(acts[0], Sleep)
    assert acts[0].error is stall
    assert silent.resume is Phase.LISTING
    _, acts = _run(silent, SleepDone(), now=200.0)
    assert acts == [ListPage("", None, 500)]
    busy, _ = _run(state, _ev("BOOKMARK", "12"), Failed(stall), now=100.0)
    assert busy.resume is Phase.WATCHING
    _, acts = _run(busy, SleepDone(), now=200.0)
    assert isinstance(acts[0], StartWatch)
    assert acts[0].resource_version == "12"
