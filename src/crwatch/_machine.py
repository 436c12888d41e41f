"""The list/watch state machine, sans-IO (h11 style).

Every decision of the list/watch loop is made by :func:`step`: it takes the current
:class:`State`, one observation of the outside world (a list page arrived, a watch event
arrived, the stream ended, a request failed, a sleep is over) and the current time, and
returns the next state and the actions the driver must perform, in order. It never awaits,
never reads a clock, and draws its randomness (jitter, watch timeouts) from a seed carried in
the state, so the same inputs always give the same outputs.

Transitions (the driver closes any open stream before it starts a new request)::

    phase           observation                       actions                       next phase
    INITIAL         Start                             StartStreamingList            STREAMING_LIST
                                                      | ListPage (streaming off)    | LISTING
    STREAMING_LIST  ADDED                             Collect                       STREAMING_LIST
                    BOOKMARK initial-events-end       ReplaceAll                    WATCHING (same
                                                                                    stream)
                    400/422, deadline, early end,     DiscardCollected, ListPage    LISTING
                    or a non-ADDED event
                    LineSkipped                       DiscardCollected, Sleep;      BACKING_OFF
                                                      paginated lists from then on
    LISTING         page with continue                Collect, ListPage(continue)   LISTING
                    last page                         Collect, ReplaceAll,
                                                      StartWatch(list RV)           WATCHING
                    410 on a page after the first     DiscardCollected,
                                                      ListPage(no limit)            LISTING
    WATCHING        ADDED / MODIFIED / DELETED        Deliver (RV recorded)         WATCHING
                    BOOKMARK                          (RV recorded)                 WATCHING
                    LineSkipped                       (relist scheduled, backoff)   WATCHING
                    RelistDue (scheduled time passed) StartStreamingList or         STREAMING_LIST
                                                      ListPage                      or LISTING
                    clean end                         StartWatch(last RV)           WATCHING
                    clean end < 1 s with nothing      Sleep                         BACKING_OFF
                    410 / RV too large                StartStreamingList or         STREAMING_LIST
                                                      ListPage                      or LISTING
                                                      (Sleep first if the watch had
                                                      delivered nothing)
    any             401/403/404 (policy "raise"),     Raise                         FAILED
                    400/422 outside streaming list
    any             401/403/404 (policy "retry")      Sleep (slowest pace)          BACKING_OFF
    any             other failure (429, 5xx,          Sleep (jittered backoff or    BACKING_OFF
                    transport, stall)                 Retry-After)
                    (a watch stalled before it delivered anything resumes as a relist)
    BACKING_OFF     SleepDone                         restart what failed (a relist *
                                                      if one is due)

The fast path. In WATCHING, a change (ADDED/MODIFIED/DELETED) has exactly one effect: a
``Deliver`` of that event and the state :func:`delivered` returns; in STREAMING_LIST, an ADDED
has exactly one effect: a ``Collect`` of its object, with the state unchanged. The driver may
therefore perform these itself, one event at a time, without building an observation or a new
state per event, provided it calls :func:`delivered` with the last resourceVersion before its
next :func:`step` (``test_machine`` checks both shortcuts against ``step``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias

from attrs import evolve, field, frozen

from ._backoff import Backoff
from ._events import CHANGE_TYPES
from ._exceptions import (
    BadRequestError,
    CrwatchError,
    ExpiredError,
    ForbiddenError,
    NotFoundError,
    ResourceVersionTooLargeError,
    ServerError,
    StallTimeout,
    UnauthorizedError,
)
from ._wire import RawEvent, status_to_error

__all__ = [
    "Action",
    "Collect",
    "Config",
    "Deliver",
    "DiscardCollected",
    "Failed",
    "InitialDeadlinePassed",
    "LineSkipped",
    "ListPage",
    "Observation",
    "PageReceived",
    "Phase",
    "Raise",
    "RelistDue",
    "ReplaceAll",
    "Sleep",
    "SleepDone",
    "Start",
    "StartStreamingList",
    "StartWatch",
    "State",
    "StreamEnded",
    "WatchEvent",
    "WatchEvents",
    "delivered",
    "initial_state",
    "step",
]

#: A watch that ends cleanly this fast with nothing delivered is treated as a failure, so a
#: server that closes every watch at once cannot drive a tight loop (client-go's
#: ``VeryShortWatchError``; docs/protocol.md, "How watches end, and how to resume").
VERY_SHORT_WATCH: Final = 1.0


class Phase(enum.Enum):
    """Where the list/watch loop is."""

    #: Nothing requested yet; the first observation must be ``Start``.
    INITIAL = "initial"
    #: A streaming list (a watch with ``sendInitialEvents=true``) is open: initial ADDED
    #: events are being collected until the ``k8s.io/initial-events-end`` bookmark.
    STREAMING_LIST = "streaming_list"
    #: A paginated list is being read, one page request at a time.
    LISTING = "listing"
    #: A watch is open from ``State.resource_version``; changes are being delivered.
    WATCHING = "watching"
    #: Waiting (a ``Sleep`` action) before restarting what failed (``State.resume``).
    BACKING_OFF = "backing_off"
    #: A fatal error was raised; the machine accepts no more observations.
    FAILED = "failed"


# --- configuration and state ------------------------------------------------------------


@frozen
class Config:
    """What the user chose; constant for the life of a watch."""

    streaming_list: bool = True
    page_size: int | None = 500
    initial_list_deadline: float = 30.0
    backoff: Backoff = field(factory=Backoff)
    on_auth_error: Literal["raise", "retry"] = "raise"
    #: ``timeoutSeconds`` of each watch is drawn from ``[low, high)`` (client-go: 5-10 min).
    watch_timeout: tuple[int, int] = (300, 600)


@frozen
class State:
    """Everything the machine knows. Build the first one with :func:`initial_state`."""

    config: Config
    phase: Phase
    #: The last resourceVersion seen (list, event or bookmark); ``""`` before the first sync.
    resource_version: str
    #: ``True`` once a full initial state has been delivered (``ReplaceAll`` done once).
    synced: bool
    #: Whether the next list is a streaming list (turned off for good by a fallback).
    streaming: bool
    #: Non-``None`` while a paginated list has more pages.
    continue_token: str | None
    #: Consecutive failures without progress (drives the backoff).
    attempt: int
    #: What ``BACKING_OFF`` restarts: ``STREAMING_LIST``/``LISTING`` (a relist) or ``WATCHING``.
    resume: Phase
    #: When the current watch (or streaming list) was requested, and whether it delivered.
    watch_started: float
    watch_progress: bool
    #: Pseudo-random generator state (splitmix64).
    seed: int
    last_error: CrwatchError | None = field(default=None, eq=False)
    #: When a relist is due because a watch line was skipped (``None``: none scheduled).
    relist_at: float | None = None
    #: Relists scheduled for skipped lines since the last watch that ended cleanly (drives
    #: their backoff, so a proxy that keeps corrupting lines cannot cause a relist loop).
    resyncs: int = 0


def initial_state(config: Config, seed: int) -> State:
    """Return the state before ``Start``."""
    return State(
        config=config,
        phase=Phase.INITIAL,
        resource_version="",
        synced=False,
        streaming=config.streaming_list,
        continue_token=None,
        attempt=0,
        resume=Phase.INITIAL,
        watch_started=0.0,
        watch_progress=False,
        seed=seed & _MASK64,
    )


# --- observations -----------------------------------------------------------------------


@frozen
class Start:
    """Begin: nothing has been requested yet."""


@frozen
class PageReceived:
    """A list page arrived (``continue_token`` is ``None`` on the last page).

    The machine passes the items on without looking at them: parsed dicts, or a compact
    cache's unparsed items.
    """

    items: Sequence[Any]
    resource_version: str
    continue_token: str | None = None


@frozen
class WatchEvent:
    """One event arrived on the open watch: the same as ``WatchEvents((event,))``."""

    event: RawEvent


@frozen
class WatchEvents:
    """Events arrived on the open watch (or streaming list), in stream order.

    The driver performs changes itself (the fast path in the module docstring) and steps
    the other events one at a time (``WatchEvent``); a batch is handled exactly as the same
    events stepped one by one, which the tests use to check the fast path.
    """

    events: Sequence[RawEvent]


@frozen
class StreamEnded:
    """The open watch ended cleanly (server timeout, or the server closed it)."""


@frozen
class InitialDeadlinePassed:
    """The streaming list's end bookmark did not arrive within ``initial_list_deadline``."""


@frozen
class Failed:
    """The current request failed: an HTTP error, an ERROR event, a transport error, a stall."""

    error: CrwatchError


@frozen
class SleepDone:
    """The last ``Sleep`` is over."""


@frozen
class LineSkipped:
    """A watch line was skipped (malformed or over ``max_event_bytes``): a change may be lost.

    Not for the incomplete last line of a stream that ended: the re-watch from the last
    resourceVersion delivers that event again.
    """

    error: CrwatchError


@frozen
class RelistDue:
    """The time ``State.relist_at`` has passed (the driver wakes up for it while watching)."""


Observation: TypeAlias = (
    Start
    | PageReceived
    | WatchEvent
    | WatchEvents
    | StreamEnded
    | InitialDeadlinePassed
    | Failed
    | SleepDone
    | LineSkipped
    | RelistDue
)

# --- actions ------------------------------------------------------------------------------


@frozen
class StartStreamingList:
    """Open a watch with ``sendInitialEvents=true&resourceVersionMatch=NotOlderThan``.

    The driver reports ``InitialDeadlinePassed`` if the end bookmark has not arrived by
    ``deadline`` (an absolute time on the clock passed to :func:`step`).
    """

    resource_version: str
    timeout_seconds: int
    deadline: float


@frozen
class ListPage:
    """Request one list page (``limit=None``: the whole list in one response)."""

    resource_version: str
    continue_token: str | None
    limit: int | None


@frozen
class StartWatch:
    """Open a watch from ``resource_version`` with bookmarks and ``timeoutSeconds``."""

    resource_version: str
    timeout_seconds: int


@frozen
class Sleep:
    """Wait until ``until`` (same clock as ``now``), then report ``SleepDone``."""

    until: float
    error: CrwatchError | None = field(default=None, eq=False)


@frozen
class Collect:
    """Add objects to the pending relist buffer."""

    objects: Sequence[Any]


@frozen
class DiscardCollected:
    """Drop the pending relist buffer (the list attempt failed)."""


@frozen
class ReplaceAll:
    """The pending buffer is a complete state at ``resource_version``: replace the cache."""

    resource_version: str


@frozen
class Deliver:
    """Hand ADDED/MODIFIED/DELETED changes to the consumer, in order."""

    events: Sequence[RawEvent]


@frozen
class Raise:
    """Stop: raise ``error`` to the consumer."""

    error: CrwatchError


Action: TypeAlias = (
    StartStreamingList
    | ListPage
    | StartWatch
    | Sleep
    | Collect
    | DiscardCollected
    | ReplaceAll
    | Deliver
    | Raise
)

#: Actions that start a request (the driver closes the open stream first).
REQUESTS: Final = (StartStreamingList, ListPage, StartWatch)

# --- randomness ---------------------------------------------------------------------------

_MASK64: Final = (1 << 64) - 1


def _random(seed: int) -> tuple[float, int]:
    """Return a uniform float in [0, 1) and the next seed (splitmix64)."""
    seed = (seed + 0x9E3779B97F4A7C15) & _MASK64
    z = seed
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53), seed


# --- the transition function --------------------------------------------------------------


def step(state: State, observation: Observation, now: float) -> tuple[State, tuple[Action, ...]]:
    """Advance the machine by one observation; return the new state and actions to perform.

    Raises:
        RuntimeError: the observation cannot happen in this phase (a driver bug).
    """
    phase = state.phase
    if isinstance(observation, WatchEvent):
        observation = WatchEvents((observation.event,))
    if isinstance(observation, Failed):
        if phase in (Phase.INITIAL, Phase.BACKING_OFF, Phase.FAILED):
            _unexpected(state, observation)
        return _on_failure(state, observation.error, now)
    if isinstance(observation, WatchEvents) and phase in (Phase.WATCHING, Phase.STREAMING_LIST):
        return _on_watch_events(state, observation.events, now)
    if phase is Phase.WATCHING:
        if isinstance(observation, StreamEnded):
            if not state.watch_progress and now - state.watch_started < VERY_SHORT_WATCH:
                return _back_off(state, None, now, resume=Phase.WATCHING)
            if _relist_due(state, now):
                return _start_list(state, now)
            if state.relist_at is None:
                # A whole watch without a skipped line: the skip backoff starts over.
                state = evolve(state, resyncs=0)
            return _start_watch(state, now)
        if isinstance(observation, LineSkipped):
            return _schedule_relist(state, now)
        if isinstance(observation, RelistDue):
            if state.relist_at is not None and now >= state.relist_at:
                return _start_list(state, now)
            return state, ()
        if isinstance(observation, InitialDeadlinePassed):
            return state, ()  # a late timer: the list already completed
    elif phase is Phase.STREAMING_LIST:
        if isinstance(observation, LineSkipped):
            # An initial object may be missing: this snapshot cannot replace the cache. List
            # again after a backoff, paginated from now on: a list response has no per-line
            # limit, so an object over max_event_bytes cannot make every snapshot fail.
            return _back_off(
                evolve(state, streaming=False),
                observation.error,
                now,
                resume=Phase.LISTING,
                discard=(DiscardCollected(),),
            )
        if isinstance(observation, RelistDue):
            return state, ()  # the list being read is the relist
        if isinstance(observation, (StreamEnded, InitialDeadlinePassed)):
            # The server ignored sendInitialEvents, or is too slow to send the end bookmark:
            # fall back to a paginated list for the life of this watch (docs/protocol.md, "Streaming
            # lists").
            return _fall_back_to_paginated(state, now)
    elif phase is Phase.LISTING:
        if isinstance(observation, PageReceived):
            return _on_page(state, observation, now)
    elif phase is Phase.BACKING_OFF:
        if isinstance(observation, SleepDone):
            if state.resume is Phase.WATCHING and not _relist_due(state, now):
                return _start_watch(state, now)
            return _start_list(state, now)
        if isinstance(observation, (LineSkipped, RelistDue)):
            return state, ()  # a late report: the stream is already closed
    elif phase is Phase.INITIAL and isinstance(observation, Start):
        return _start_list(state, now)
    return _unexpected(state, observation)


def _relist_due(state: State, now: float) -> bool:
    return state.relist_at is not None and now >= state.relist_at


def _schedule_relist(state: State, now: float) -> tuple[State, tuple[Action, ...]]:
    # The skipped line may have carried a change we will never see again on this watch
    # (the stream has moved past its resourceVersion): only a list converges. The stream is
    # already resynchronised at the next line, so it goes on until the relist is due; the
    # delay backs off with each relist a skip caused since the last clean watch.
    if state.relist_at is not None:
        return state, ()  # one relist covers every line skipped before it
    u, seed = _random(state.seed)
    delay = state.config.backoff.delay(state.resyncs, u)
    new = evolve(state, relist_at=now + delay, resyncs=state.resyncs + 1, seed=seed)
    return new, ()


def _unexpected(state: State, observation: Observation) -> tuple[State, tuple[Action, ...]]:
    raise RuntimeError(f"{type(observation).__name__} cannot happen in phase {state.phase.name}")


def _timeout(state: State) -> tuple[int, int]:
    low, high = state.config.watch_timeout
    u, seed = _random(state.seed)
    return low + int(u * max(0, high - low)), seed


def _start_list(state: State, now: float) -> tuple[State, tuple[Action, ...]]:
    # Relists read the most recent state (RV ""), a consistent read: a stale "any" read
    # (RV "0") could go back in time against what the consumer already saw (docs/protocol.md,
    # "Ordering and duplicates").
    if state.streaming:
        timeout, seed = _timeout(state)
        deadline = now + state.config.initial_list_deadline
        new = evolve(
            state,
            phase=Phase.STREAMING_LIST,
            continue_token=None,
            watch_started=now,
            watch_progress=False,
            seed=seed,
            relist_at=None,
        )
        return new, (StartStreamingList("", timeout, deadline),)
    new = evolve(state, phase=Phase.LISTING, continue_token=None, relist_at=None)
    return new, (ListPage("", None, state.config.page_size),)


def _start_watch(state: State, now: float) -> tuple[State, tuple[Action, ...]]:
    timeout, seed = _timeout(state)
    new = evolve(state, phase=Phase.WATCHING, watch_started=now, watch_progress=False, seed=seed)
    return new, (StartWatch(state.resource_version, timeout),)


def _fall_back_to_paginated(state: State, now: float) -> tuple[State, tuple[Action, ...]]:
    new, actions = _start_list(evolve(state, streaming=False), now)
    return new, (DiscardCollected(), *actions)


def _on_initial_event(
    state: State, event: RawEvent, now: float
) -> tuple[State, tuple[Action, ...]]:
    kind = event.type
    if kind == "ADDED":
        return state, (Collect((event.object,)),)
    if kind == "BOOKMARK":
        if not event.initial_events_end:
            return state, ()
        if not event.resource_version:
            return _fall_back_to_paginated(state, now)
        # The initial state is complete; the same stream goes on as a normal watch.
        new = evolve(
            state,
            phase=Phase.WATCHING,
            resource_version=event.resource_version,
            synced=True,
            attempt=0,
            watch_progress=True,
            last_error=None,
        )
        return new, (ReplaceAll(event.resource_version),)
    if kind == "ERROR":
        return _on_failure(state, status_to_error(event.object, verb="watch"), now)
    # MODIFIED/DELETED before the end bookmark: not a streaming list (an old server that
    # ignores sendInitialEvents); its initial events cannot be trusted as a snapshot.
    return _fall_back_to_paginated(state, now)


_LEAVES_STREAM: Final = (StartStreamingList, ListPage, StartWatch, Sleep, Raise)


def _on_watch_events(
    state: State, events: Sequence[RawEvent], now: float
) -> tuple[State, tuple[Action, ...]]:
    actions: list[Action] = []
    run: list[RawEvent] = []  # consecutive changes while WATCHING: delivered in one action
    for event in events:
        phase = state.phase
        if phase is Phase.WATCHING and event.type in CHANGE_TYPES:
            run.append(event)
            continue
        if run:
            state = _delivered(state, run)
            actions.append(Deliver(tuple(run)))
            run = []
        if phase is Phase.WATCHING:
            state, more = _on_watch_event(state, event, now)
        elif phase is Phase.STREAMING_LIST:
            state, more = _on_initial_event(state, event, now)
        else:  # pragma: no cover - the loop stops at the action that ends the stream
            break
        actions.extend(more)
        if any(isinstance(action, _LEAVES_STREAM) for action in more):
            # This event ended the stream (an error, a fallback): the driver closes it, and
            # what followed on it no longer counts.
            break
    if run:
        state = _delivered(state, run)
        actions.append(Deliver(tuple(run)))
    return state, tuple(actions)


def _delivered(state: State, run: list[RawEvent]) -> State:
    rv = state.resource_version
    for event in reversed(run):
        if event.resource_version:
            rv = event.resource_version
            break
    return delivered(state, rv)


def delivered(state: State, resource_version: str) -> State:
    """Return the state after changes were delivered while WATCHING, the last at this RV.

    The driver's fast path (see the module docstring) calls it once for a run of changes it
    delivered itself; ``""`` keeps the current resourceVersion.
    """
    return evolve(
        state,
        resource_version=resource_version or state.resource_version,
        watch_progress=True,
        attempt=0,
        last_error=None,
    )


def _on_watch_event(state: State, event: RawEvent, now: float) -> tuple[State, tuple[Action, ...]]:
    # A BOOKMARK or an ERROR while watching; changes are batched by the caller.
    kind = event.type
    if kind == "ERROR":
        return _on_failure(state, status_to_error(event.object, verb="watch"), now)
    # Resuming from a bookmark's RV is safe: no repeats, no gaps (docs/protocol.md, "Bookmarks").
    new = evolve(
        state,
        resource_version=event.resource_version or state.resource_version,
        watch_progress=True,
        attempt=0,
        last_error=None,
    )
    if kind == "BOOKMARK":
        return new, ()
    return new, (Deliver((event,)),)


def _on_page(state: State, page: PageReceived, now: float) -> tuple[State, tuple[Action, ...]]:
    if not page.resource_version:
        error = ServerError("list response has no metadata.resourceVersion", code=200, verb="list")
        return _on_failure(state, error, now)
    collect: tuple[Action, ...] = (Collect(page.items),) if page.items else ()
    if page.continue_token:
        # Follow-up pages repeat the selectors and carry no resourceVersion (docs/protocol.md,
        # "Requests").
        new = evolve(state, continue_token=page.continue_token)
        return new, (*collect, ListPage("", page.continue_token, state.config.page_size))
    synced = evolve(
        state,
        resource_version=page.resource_version,
        synced=True,
        continue_token=None,
        attempt=0,
        last_error=None,
    )
    new, watch = _start_watch(synced, now)
    return new, (*collect, ReplaceAll(page.resource_version), *watch)


def _on_failure(state: State, error: CrwatchError, now: float) -> tuple[State, tuple[Action, ...]]:
    phase = state.phase
    collecting = phase in (Phase.STREAMING_LIST, Phase.LISTING)
    discard: tuple[Action, ...] = (DiscardCollected(),) if collecting else ()
    state = evolve(state, last_error=error)

    if isinstance(error, (UnauthorizedError, ForbiddenError, NotFoundError)):
        if state.config.on_auth_error == "raise":
            return evolve(state, phase=Phase.FAILED), (*discard, Raise(error))
        # Keep trying, at the slowest pace: RBAC may be fixed while we wait.
        u, seed = _random(state.seed)
        resume = Phase.WATCHING if phase is Phase.WATCHING else Phase.LISTING
        new = evolve(state, phase=Phase.BACKING_OFF, resume=resume, seed=seed)
        return new, (*discard, Sleep(now + state.config.backoff.slowest(u), error))

    if isinstance(error, BadRequestError):  # 400 and 422
        if phase is Phase.STREAMING_LIST:
            # The server does not support streaming lists (WatchList gate off): 422 (or 400
            # from older servers); client-go falls back to LIST + WATCH (docs/protocol.md,
            # "Streaming lists").
            return _fall_back_to_paginated(state, now)
        return evolve(state, phase=Phase.FAILED), (*discard, Raise(error))

    if isinstance(error, (ExpiredError, ResourceVersionTooLargeError)):
        if phase is Phase.LISTING and state.continue_token:
            # A continue token expired on a page after the first: one full, unpaginated
            # list, as client-go's pager does (FullListIfExpired; docs/protocol.md, "Pagination").
            new = evolve(state, continue_token=None)
            return new, (*discard, ListPage("", None, None))
        if phase is Phase.WATCHING and state.watch_progress:
            # Our RV is too old (or too new for this server): relist at once (docs/protocol.md, "How
            # watches end, and how to resume").
            return _start_list(state, now)
        # Expired again with nothing delivered: relist, but after a backoff, so a server
        # that keeps answering 410 cannot drive a tight loop.
        return _back_off(state, error, now, resume=Phase.LISTING, discard=discard)

    # Throttling, server errors, transport errors, stalls: back off, then retry the same
    # thing (a watch resumes from the last RV; a list starts over).
    resume = Phase.WATCHING if phase is Phase.WATCHING else Phase.LISTING
    if isinstance(error, StallTimeout) and phase is Phase.WATCHING and not state.watch_progress:
        # A watch silent from its very start, not even a bookmark: kube-apiserver's watch
        # cache keeps a watch from a resourceVersion it has not reached silent (a cluster
        # restored from a backup went back below ours), and resuming from it would stay
        # silent. A relist reads the current state instead.
        resume = Phase.LISTING
    return _back_off(state, error, now, resume=resume, discard=discard)


def _back_off(
    state: State,
    error: CrwatchError | None,
    now: float,
    *,
    resume: Phase,
    discard: tuple[Action, ...] = (),
) -> tuple[State, tuple[Action, ...]]:
    u, seed = _random(state.seed)
    retry_after = getattr(error, "retry_after", None)
    delay = state.config.backoff.delay(state.attempt, u, retry_after)
    new = evolve(
        state,
        phase=Phase.BACKING_OFF,
        resume=resume,
        attempt=state.attempt + 1,
        seed=seed,
        continue_token=None,
    )
    return new, (*discard, Sleep(now + delay, error))
