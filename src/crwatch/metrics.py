"""Metrics of crwatch's watches, informers, work queues and controllers.

Register the objects to export, then hand the registry to an exporter::

    import crwatch.metrics

    crwatch.metrics.register(informer, name="widgets")   # resource="widgets"
    crwatch.metrics.register(controller)                  # its name, and its work queue

    # Prometheus (pip install "crwatch[prometheus]")
    import prometheus_client, crwatch.prometheus
    prometheus_client.REGISTRY.register(crwatch.prometheus.Collector())

    # OpenTelemetry (pip install "crwatch[otel]")
    import crwatch.otel
    crwatch.otel.instrument()

Collection reads each registered object's ``statistics()`` when the exporter collects; no
work is done per event. The series and their meaning are listed in the metrics guide.
"""

from __future__ import annotations

from ._metrics import (
    METRICS,
    Metric,
    MetricInfo,
    Registry,
    Sample,
    default_registry,
    info,
    register,
    unregister,
)

__all__ = [
    "METRICS",
    "Metric",
    "MetricInfo",
    "Registry",
    "Sample",
    "default_registry",
    "info",
    "register",
    "unregister",
]

for _name in ("Metric", "MetricInfo", "Registry", "Sample", "info", "register", "unregister"):
    globals()[_name].__module__ = __name__
del _name
