"""Run a `FakeApiServer` from the command line: ``python -m crwatch.testing --port 8001``.

Serves until Ctrl-C or SIGTERM, and writes a kubeconfig so kubectl can talk to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path

from ._server import FakeApiServer


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m crwatch.testing", description="Serve an in-process fake Kubernetes API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="where to write the kubeconfig"
    )
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    parser.add_argument(
        "--tls", action="store_true", help="serve HTTPS (kubectl sends tokens only over TLS)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    server = FakeApiServer(
        host=args.host,
        port=args.port,
        token=args.token,
        bookmark_interval=args.bookmark_interval,
        tls=args.tls,
    )
    async with server:
        path = (
            args.kubeconfig
            or Path(tempfile.gettempdir()) / f"crwatch-fake-{server.port}.kubeconfig"
        )
        server.kubeconfig(path)
        print(f"Fake Kubernetes API server listening on {server.url}", flush=True)
        print(f"kubeconfig written to {path}; point kubectl at it with:", flush=True)
        print(f"  export KUBECONFIG={path}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        # SIGTERM (a service manager, a background job whose SIGINT is ignored) stops it
        # cleanly too, exit status 0.
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


if __name__ == "__main__":
    main()
