"""``crwatch demo``: a watcher against an embedded fake cluster, with faults.

Everything runs in one process: `crwatch.testing.FakeApiServer` plays the cluster, a writer
task plays the users of the cluster, and the watcher prints what it sees. The writer drops
the watch connection once (the watcher resumes from its last resourceVersion) and makes the
server forget its history while the watcher is away (the watcher gets 410 Gone, lists again
and reports only the differences, including a synthetic DELETED).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import anyio

from ._client import Client
from ._events import Event, EventType
from ._format import format_event
from ._resource import Resource
from ._watch import watch

WIDGETS = Resource("example.com", "v1", "widgets", kind="Widget", namespaced=True)
NAMESPACE = "default"


def _widget(name: str, size: int, tier: str = "edge") -> dict[str, Any]:
    return {
        "apiVersion": WIDGETS.api_version,
        "kind": "Widget",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"tier": tier}},
        "spec": {"size": size, "color": "blue"},
    }


class _Narrator(logging.Handler):
    """Print crwatch's own log records (retries, relists) as part of the story."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        print(f"  .. crwatch: {record.getMessage()}", file=self.out, flush=True)


@contextlib.contextmanager
def _narrate(out: TextIO, enabled: bool) -> Iterator[None]:
    logger = logging.getLogger("crwatch")
    handler = _Narrator(out)
    old_level, old_propagate = logger.level, logger.propagate
    if enabled:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    logger.propagate = False  # -o json keeps stdout machine-readable and stderr quiet
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


async def run_demo(*, out: TextIO, output: str = "table", color: bool = False) -> int:
    """Run the demo, printing to ``out``; return 0 when the watcher converged, else 1.

    ``output`` is a ``-o`` format; the table formats also narrate what the writer does.
    """
    rows = output in ("table", "wide")

    def say(text: str) -> None:
        if rows:
            print(f"  -- {text}", file=out, flush=True)

    with _narrate(out, rows):
        return await _run(out, output, say, color)


async def _run(out: TextIO, output: str, say: Any, color: bool) -> int:
    from .testing import FakeApiServer, Fault

    started = time.monotonic()
    seen: dict[str, dict[str, Any]] = {}
    counts: Counter[str] = Counter()
    synthetic = 0
    progress = anyio.Event()

    async with FakeApiServer(bookmark_interval=1.0) as server:
        widgets = server.register_crd(
            group=WIDGETS.group,
            version=WIDGETS.version,
            plural=WIDGETS.plural,
            kind="Widget",
            status_subresource=True,
        )
        server.create(widgets, _widget("edge-a", 1))
        server.create(widgets, _widget("edge-b", 2))
        say(f"fake cluster at {server.url}: CRD widgets.example.com, 2 widgets exist")

        async def wait_for(predicate: Any) -> None:
            nonlocal progress
            with anyio.fail_after(10):
                while not predicate():
                    await progress.wait()
                    progress = anyio.Event()

        async def writer() -> None:
            await wait_for(lambda: {"default/edge-a", "default/edge-b"} <= seen.keys())
            say("writer: create edge-c, resize edge-a, label edge-b")
            server.create(widgets, _widget("edge-c", 3))
            server.patch(widgets, "edge-a", {"spec": {"size": 10}}, namespace=NAMESPACE)
            server.patch(
                widgets, "edge-b", {"metadata": {"labels": {"owner": "ops"}}}, namespace=NAMESPACE
            )
            await wait_for(lambda: _converged(server, widgets, seen))

            say("fault: the watch connection drops; the watcher resumes from its last RV")
            server.close_watches()
            server.patch(widgets, "edge-c", {"spec": {"color": "red"}}, namespace=NAMESPACE)
            await wait_for(lambda: _converged(server, widgets, seen))

            say("fault: the connection drops again and the server forgets its history")
            # The next watch is refused for a second; meanwhile edge-b is deleted, edge-a
            # changes, and compaction makes the watcher's last RV too old: it gets 410 Gone.
            refused = server.faults.add(Fault.status(503, retry_after=1), verb="watch")
            server.close_watches()
            with anyio.fail_after(10):
                # FakeApiServer has no hook on fault firings; a short poll is enough here.
                while not refused.fired:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            server.delete(widgets, "edge-b", namespace=NAMESPACE)
            server.patch(widgets, "edge-a", {"spec": {"size": 20}}, namespace=NAMESPACE)
            server.compact()
            await wait_for(lambda: _converged(server, widgets, seen))

            say("writer: delete edge-c")
            server.delete(widgets, "edge-c", namespace=NAMESPACE)
            await wait_for(lambda: _converged(server, widgets, seen))

        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = server.kubeconfig(Path(tmp) / "kubeconfig")
            async with (
                Client.from_kubeconfig(kubeconfig) as client,
                watch(client, WIDGETS, namespace=NAMESPACE) as events,
                anyio.create_task_group() as tasks,
            ):
                done = anyio.Event()

                async def write_then_stop() -> None:
                    try:
                        await writer()
                    finally:
                        done.set()
                        tasks.cancel_scope.cancel()

                tasks.start_soon(write_then_stop)
                async for event in events:
                    _apply(seen, event)
                    counts[str(event.type)] += 1
                    synthetic += event.synthetic
                    print(format_event(event, output, color=color), file=out, flush=True)
                    progress.set()
            stats = events.statistics()

        ok = _converged(server, widgets, seen)
    elapsed = time.monotonic() - started
    if output in ("table", "wide"):
        total = sum(counts.values())
        print(
            f"demo: {total} events ({counts['ADDED']} ADDED, {counts['MODIFIED']} MODIFIED, "
            f"{counts['DELETED']} DELETED, {synthetic} synthetic) over {stats.watches} watch "
            f"requests and {stats.lists - 1} relist in {elapsed:.1f} s; the watcher's view "
            f"{'matches' if ok else 'DOES NOT match'} the server's {len(seen)} objects",
            file=out,
            flush=True,
        )
    return 0 if ok else 1


def _apply(seen: dict[str, dict[str, Any]], event: Event) -> None:
    if event.type is EventType.DELETED:
        seen.pop(event.key, None)
    else:
        seen[event.key] = event.object


def _converged(server: Any, widgets: Any, seen: dict[str, dict[str, Any]]) -> bool:
    current = {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in server.list(widgets, namespace=NAMESPACE)
    }
    return current == {k: o["metadata"]["resourceVersion"] for k, o in seen.items()}
