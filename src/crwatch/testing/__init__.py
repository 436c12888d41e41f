"""Test helpers for code that talks to Kubernetes: an in-process fake API server.

``FakeApiServer`` serves discovery, CustomResourceDefinitions, namespaces, configmaps,
leases and any custom resource over HTTP on ``127.0.0.1``, following the list/watch
protocol of kube-apiserver (resourceVersions, bookmarks, streaming lists, pagination,
compaction, selectors, finalizers, status subresource), with scripted faults (`Fault`,
`FaultPlan`) and deny rules. Real clients (kubernetes-asyncio, kubectl) talk to it
through ``server.kubeconfig(path)``; tests can also read and write objects directly
through its Python API. Pytest fixtures live in ``crwatch.testing.pytest_plugin``.

Errors raised by the Python API::

    Exception
     └── ApiError            a Kubernetes Status (code, reason, message)
"""

from __future__ import annotations

from ._faults import Fault, FaultFiring, FaultPlan, FaultRule
from ._server import DenyRule, FakeApiServer, ServerSnapshot, ServerStatistics
from ._state import ApiError, ResourceType

__all__ = [
    "ApiError",
    "DenyRule",
    "FakeApiServer",
    "Fault",
    "FaultFiring",
    "FaultPlan",
    "FaultRule",
    "ResourceType",
    "ServerSnapshot",
    "ServerStatistics",
]

for _name in __all__:
    globals()[_name].__module__ = "crwatch.testing"
del _name
