"""Model-based checks of the storage core: history, snapshots and watch replay agree.

These drive ``crwatch.testing._state`` directly (it is pure and synchronous) with random
operation sequences, then compare what a client would reconstruct against the truth.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from crwatch.testing._selectors import parse_label_selector
from crwatch.testing._state import ApiError, ClusterState, ListOptions, ResourceType

WIDGETS = ResourceType("example.com", "v1", "widgets", "Widget", True, "WidgetList", "widget")

names = st.sampled_from(["a", "b", "c"])
namespaces = st.sampled_from(["default", "other"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), names, namespaces, st.booleans(), st.booleans()),
        st.tuples(st.just("patch"), names, namespaces, st.integers(0, 3), st.booleans()),
        st.tuples(st.just("delete"), names, namespaces, st.none(), st.none()),
        st.tuples(st.just("unfinalize"), names, namespaces, st.none(), st.none()),
    ),
    max_size=25,
)


def _state() -> ClusterState:
    state = ClusterState(history_size=1000)
    state.register(WIDGETS)
    return state


def _apply(state: ClusterState, op: tuple[str, str, str, Any, Any]) -> None:
    kind, name, ns, arg, flag = op
    try:
        if kind == "create":
            meta: dict[str, Any] = {"name": name, "labels": {"hot": str(arg).lower()}}
            if flag:
                meta["finalizers"] = ["x/y"]
            state.create(WIDGETS, {"metadata": meta, "spec": {"v": 0}}, ns)
        elif kind == "patch":
            labels = {"hot": "true" if flag else "false"}
            state.patch(WIDGETS, name, {"metadata": {"labels": labels}, "spec": {"v": arg}}, ns)
        elif kind == "delete":
            state.delete(WIDGETS, name, ns)
        else:
            state.patch(WIDGETS, name, {"metadata": {"finalizers": None}}, ns)
    except ApiError as exc:
        if exc.code not in (404, 409):  # missing objects and name clashes are expected
            raise


def _view(state: ClusterState, opts: ListOptions | None = None) -> dict[str, Any]:
    body = state.list_objects(WIDGETS, None, opts or ListOptions())
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in body["items"]}


def _replay(lines: list[bytes], start: dict[str, Any]) -> dict[str, Any]:
    view = dict(start)
    for line in lines:
        event = orjson.loads(line)
        obj = event["object"]
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        if event["type"] == "DELETED":
            assert key in view, "DELETED for an object the client never saw"
            del view[key]
        else:
            assert (event["type"] == "ADDED") == (key not in view)
            view[key] = obj
    return view


@settings(max_examples=60, deadline=None)
@given(operations, operations)
def test_exact_lists_and_watch_replay_match_truth(before: list[Any], after: list[Any]) -> None:
    """Exact lists at past RVs equal the state then; watches replay to the final state."""
    state = _state()
    for op in before:
        _apply(state, op)
    start_rv = state.rv
    start_view = _view(state)
    hot = parse_label_selector("hot=true")
    plain = state.open_watch(WIDGETS, None, ListOptions(watch=True, resource_version=str(start_rv)))
    selected = state.open_watch(
        WIDGETS,
        None,
        ListOptions(watch=True, resource_version=str(start_rv), label_selector=hot),
    )
    history: dict[int, dict[str, Any]] = {start_rv: start_view}
    for op in after:
        _apply(state, op)
        history[state.rv] = _view(state)
    final = _view(state)
    for rv, expected in history.items():
        exact = ListOptions(resource_version=str(rv), resource_version_match="Exact")
        assert _view(state, exact) == expected
    plain_lines = plain[0].pending()
    assert plain_lines is not None
    assert _replay(plain_lines, start_view) == final
    selected_lines = selected[0].pending()
    assert selected_lines is not None
    start_hot = {k: v for k, v in start_view.items() if v["metadata"]["labels"]["hot"] == "true"}
    final_hot = {k: v for k, v in final.items() if v["metadata"]["labels"]["hot"] == "true"}
    assert _replay(selected_lines, start_hot) == final_hot
    rvs = [int(orjson.loads(line)["object"]["metadata"]["resourceVersion"]) for line in plain_lines]
    assert rvs == sorted(set(rvs))
    assert all(rv > start_rv for rv in rvs)


@settings(max_examples=40, deadline=None)
@given(operations, st.integers(1, 4))
def test_pages_concatenate_to_the_full_list(ops: list[Any], limit: int) -> None:
    """Paging with any limit returns exactly the unpaginated list, in key order."""
    state = _state()
    for op in ops:
        _apply(state, op)
    full = list(_view(state))
    seen: list[str] = []
    token = ""
    while True:
        body = state.list_objects(WIDGETS, None, ListOptions(limit=limit, continue_token=token))
        seen += [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in body["items"]]
        token = body["metadata"]["continue"]
        if not token:
            break
        assert body["metadata"]["remainingItemCount"] == len(full) - len(seen)
    assert seen == full == sorted(full)
