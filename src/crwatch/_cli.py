"""The ``crwatch`` command: ``crwatch demo`` and ``crwatch watch RESOURCE``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

import anyio

from ._exceptions import CrwatchError, TransportError, UnauthorizedError
from ._format import OUTPUTS, Progress, check_output, format_event, use_color

if TYPE_CHECKING:
    from ._watch import EventStream

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
    demo.add_argument("-o", "--output", choices=OUTPUTS, default="table")

    watch = commands.add_parser(
        "watch",
        help="watch a resource on a cluster, like kubectl get -w",
        description="Print the current objects as ADDED, then every change, until Ctrl-C.",
    )
    watch.add_argument(
        "resource",
        help=(
            "a resource type as kubectl takes it: widgets, Widget, a short name, "
            "widgets.example.com, widgets.v1.example.com or example.com/v1/widgets"
        ),
    )
    scope = watch.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        help="namespace to watch (default: the kubeconfig context's namespace, else 'default')",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    watch.add_argument("-l", "--selector", dest="label_selector", help="label selector")
    watch.add_argument("--field-selector", help="field selector, e.g. metadata.name=a")
    watch.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, ~/.kube)")
    watch.add_argument("--context", help="kubeconfig context to use")
    watch.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        default="table",
        help="table (default), wide (generation, creation time, labels), json lines, yaml",
    )
    return parser


async def _watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._client import Client
    from ._watch import watch

    check_output(args.output)
    color = use_color(out)
    async with Client.from_kubeconfig(args.kubeconfig, context=args.context) as client:
        # Discovery gives the served version and the scope, as kubectl resolves names.
        resource = await client.resource(args.resource)
        namespace = None
        if resource.namespaced and not args.all_namespaces:
            namespace = args.namespace or _context_namespace(args)
        progress = Progress(err, str(resource)) if err.isatty() else None
        try:
            async with (
                watch(
                    client,
                    resource,
                    namespace=namespace,
                    label_selector=args.label_selector,
                    field_selector=args.field_selector,
                ) as events,
                anyio.create_task_group() as tasks,
            ):
                if progress is not None:
                    progress.draw(force=True)
                    tasks.start_soon(_tick, progress, events)
                async for event in events:
                    if progress is not None and progress.active:
                        progress.erase()
                    print(format_event(event, args.output, color=color), file=out, flush=True)
                    if progress is not None and progress.active:
                        progress.count += 1
                        if events.statistics().synced:
                            progress.finish()
                        else:
                            progress.draw()
        finally:
            if progress is not None:
                progress.finish()  # an interrupted list leaves no half-drawn line behind
    return 0


def _context_namespace(args: argparse.Namespace) -> str:
    """Return the namespace of the kubeconfig context in use: kubectl's default for ``-n``.

    The files were read and checked when the client connected; this reads them again for
    the one field the client does not keep.
    """
    from ._kubeconfig import default_paths, load

    explicit = args.kubeconfig is not None
    paths = [Path(args.kubeconfig)] if explicit else default_paths()
    return load(paths, args.context, explicit=explicit).namespace


async def _tick(progress: Progress, events: EventStream) -> None:
    """Redraw the progress line until the initial state is in (an empty list sends nothing)."""
    while progress.active:
        if events.statistics().synced:
            progress.finish()
            return
        progress.draw()
        await anyio.sleep(0.1)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the ``crwatch`` command line; return the process exit code.

    Rows go to ``out`` (default stdout); errors and the progress line to ``err`` (default
    stderr). An error crwatch reports (unreachable server, refused credentials, unknown
    resource type, 403...) is one line on ``err`` and exit code 1, never a traceback.
    """
    args = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    errors = err if err is not None else sys.stderr
    try:
        if args.command == "demo":
            from ._demo import run_demo

            check_output(args.output)
            demo = partial(run_demo, out=stream, output=args.output, color=use_color(stream))
            return anyio.run(demo)
        return anyio.run(_watch, args, stream, errors)
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
        print(f"crwatch: error: {_explain(crwatch_error)}", file=errors, flush=True)
        return 1


def _explain(err: CrwatchError) -> str:
    """One line for a user: the error's message, and what to check for the common ones."""
    message = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, TransportError):
        return f"cannot reach the API server: {message}"
    if isinstance(err, UnauthorizedError):
        return f"{message} (the kubeconfig's credentials were refused)"
    return message


def _made_of(err: BaseException, kind: type[_E]) -> _E | None:
    """Return ``err`` (or the single error inside exception groups) if it is a ``kind``."""
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    return err if isinstance(err, kind) else None
