"""Typing-only use of crwatch.metrics, the exporters and crwatch.compat (mypy, never run)."""

from __future__ import annotations

from typing import Any

import prometheus_client
from opentelemetry.sdk.metrics import MeterProvider
from typing_extensions import assert_type

import crwatch
import crwatch.compat
import crwatch.metrics
import crwatch.otel
import crwatch.prometheus


def export(informer: crwatch.Informer, queue: crwatch.WorkQueue[str]) -> None:
    crwatch.metrics.register(informer, name="widgets")
    registry = crwatch.metrics.Registry()
    registry.register(queue)
    for metric in registry.collect():
        assert_type(metric.info.name, str)
        for sample in metric.samples:
            assert_type(sample.value, "float | crwatch.Durations")
    prometheus_client.REGISTRY.register(crwatch.prometheus.Collector(registry))
    crwatch.otel.instrument(meter_provider=MeterProvider(), registry=registry)
    crwatch.metrics.unregister(informer)


def sync_loop(api: Any) -> list[str]:
    names: list[str] = []
    with crwatch.compat.stream(api.list_namespaced_config_map, "default") as events:
        for event in events:
            assert_type(event, dict[str, Any])
            names.append(event["raw_object"]["metadata"]["name"])
    return names


async def async_loop(api: Any) -> None:
    async with crwatch.compat.stream(
        api.list_cluster_custom_object, "example.com", "v1", "widgets", label_selector="a=b"
    ) as events:
        async for event in events:
            assert_type(event, dict[str, Any])
            events.stop()
