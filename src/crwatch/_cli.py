"""The ``crwatch`` command: ``crwatch demo`` and ``crwatch watch RESOURCE``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any, TextIO, TypeVar

import anyio
import orjson

from ._events import Event
from ._exceptions import CrwatchError
from ._resource import Resource

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

_E = TypeVar("_E", bound=BaseException)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crwatch",
        description="Watch Kubernetes resources: list, then watch, surviving disconnects.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a watcher against an embedded fake cluster, with faults",
        description=(
            "Start crwatch.testing.FakeApiServer, register a CRD, watch it while a writer "
            "creates, edits and deletes objects, drop the connection once and force a "
            "410 Gone, and print every event as it arrives."
        ),
    )
    demo.add_argument("-o", "--output", choices=("table", "json"), default="table")

    watch = commands.add_parser(
        "watch",
        help="watch a resource on a cluster, like kubectl get -w",
        description="Print the current objects as ADDED, then every change, until Ctrl-C.",
    )
    watch.add_argument("resource", help="plural.version.group, e.g. widgets.v1.example.com")
    scope = watch.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace to watch (default: 'default')")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    watch.add_argument("-l", "--selector", dest="label_selector", help="label selector")
    watch.add_argument("--field-selector", help="field selector, e.g. metadata.name=a")
    watch.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, ~/.kube)")
    watch.add_argument("--context", help="kubeconfig context to use")
    watch.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return parser


def format_event(event: Event, output: str) -> str:
    """Render one event as a table row or as one JSON line (``-o json``)."""
    if output == "json":
        doc: dict[str, Any] = {"type": str(event.type), "object": event.object}
        if event.synthetic:
            doc["synthetic"] = True
        return orjson.dumps(doc).decode()
    mark = " (synthetic)" if event.synthetic else ""
    return f"{event.type!s:<9} {event.key:<32} rv={event.resource_version}{mark}"


async def _watch(args: argparse.Namespace, out: TextIO) -> int:
    from ._client import Client
    from ._watch import watch

    resource = Resource.parse(args.resource)
    namespace = None if args.all_namespaces else (args.namespace or "default")
    async with (
        Client.from_kubeconfig(args.kubeconfig, context=args.context) as client,
        watch(
            client,
            resource,
            namespace=namespace,
            label_selector=args.label_selector,
            field_selector=args.field_selector,
        ) as events,
    ):
        async for event in events:
            print(format_event(event, args.output), file=out, flush=True)
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the ``crwatch`` command line; return the process exit code."""
    args = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return anyio.run(partial(run_demo, out=stream, output=args.output))
        return anyio.run(_watch, args, stream)
    except KeyboardInterrupt:
        return 130
    except BaseException as err:
        if _made_of(err, BrokenPipeError):
            # The reader went away (`crwatch watch ... | head`): stop quietly, as cat does.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        crwatch_error = _made_of(err, CrwatchError)
        if crwatch_error is None:
            raise
        print(f"crwatch: error: {crwatch_error}", file=sys.stderr)
        return 1


def _made_of(err: BaseException, kind: type[_E]) -> _E | None:
    """Return ``err`` (or the single error inside exception groups) if it is a ``kind``."""
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    return err if isinstance(err, kind) else None
