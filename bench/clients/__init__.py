"""Benchmark clients: one function per (client, scenario), each run in its own process."""

from __future__ import annotations

from dataclasses import dataclass

from _objects import GROUP, NAMESPACE, PATH, PLURAL, VERSION

__all__ = ["GROUP", "NAMESPACE", "PATH", "PLURAL", "VERSION", "Ctx", "Unavailable"]


class Unavailable(Exception):
    """The client cannot run here (not installed, not built yet); the message says why."""


@dataclass(frozen=True)
class Ctx:
    base: str  # http://127.0.0.1:PORT
    count: int  # events (throughput) or objects (sync, memory) to handle, then stop
    kubeconfig: str  # a kubeconfig pointing at the stream server

    @property
    def url(self) -> str:
        return self.base + PATH
