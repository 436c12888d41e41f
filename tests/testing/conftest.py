"""Fixtures for the FakeApiServer tests: the public plugin's fixtures plus helpers."""

from __future__ import annotations

from crwatch.testing.pytest_plugin import (  # noqa: F401
    fake_apiserver,
    fake_apiserver_options,
    fake_kubeconfig,
    k8s_api_client,
)
