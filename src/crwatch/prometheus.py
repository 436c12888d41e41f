"""Export crwatch's metrics to prometheus-client (``pip install "crwatch[prometheus]"``).

::

    import prometheus_client
    import crwatch.metrics, crwatch.prometheus

    crwatch.metrics.register(informer, name="widgets")
    prometheus_client.REGISTRY.register(crwatch.prometheus.Collector())
    prometheus_client.start_http_server(8000)

The collector reads the registered objects' ``statistics()`` at each scrape (a custom
collector, https://prometheus.github.io/client_python/collector/custom/), so nothing is
counted twice and nothing runs between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator as _Iterator

from prometheus_client import core as _core
from prometheus_client.registry import Collector as _PrometheusCollector

from . import _metrics
from ._workqueue import Durations as _Durations

__all__ = ["Collector"]


def _family(info: _metrics.MetricInfo) -> _core.Metric:
    labels = list(info.labels)
    if info.kind == "counter":
        return _core.CounterMetricFamily(info.name, info.help, labels=labels, unit=info.unit)
    if info.kind == "gauge":
        return _core.GaugeMetricFamily(info.name, info.help, labels=labels, unit=info.unit)
    return _core.HistogramMetricFamily(info.name, info.help, labels=labels, unit=info.unit)


def _histogram_buckets(value: _Durations) -> list[tuple[str, float]]:
    buckets = [
        (repr(bound), float(count))
        for bound, count in zip(_Durations.bounds, value.buckets, strict=True)
    ]
    buckets.append(("+Inf", float(value.count)))
    return buckets


class Collector(_PrometheusCollector):
    """A prometheus-client collector of a :class:`crwatch.metrics.Registry`'s series.

    Register it once with a ``prometheus_client.CollectorRegistry``; every scrape then
    reads the statistics of the objects registered with crwatch's registry.

    Args:
        registry: the crwatch registry to read. Default: ``crwatch.metrics.default_registry``,
            which :func:`crwatch.metrics.register` fills.
    """

    def __init__(self, registry: _metrics.Registry | None = None) -> None:
        self._registry = _metrics.default_registry if registry is None else registry

    def __repr__(self) -> str:
        return f"<crwatch.prometheus.Collector of {self._registry!r}>"

    def describe(self) -> _Iterator[_core.Metric]:
        """Yield every family without samples (lets prometheus-client catch name clashes)."""
        for info in _metrics.METRICS:
            yield _family(info)

    def collect(self) -> _Iterator[_core.Metric]:
        """Read the registered objects' statistics now; yield the families with samples."""
        for metric in self._registry.collect():
            family = _family(metric.info)
            for sample in metric.samples:
                values = [value for _, value in sample.labels]
                if isinstance(sample.value, _Durations):
                    assert isinstance(family, _core.HistogramMetricFamily)
                    family.add_metric(
                        values,
                        buckets=_histogram_buckets(sample.value),
                        sum_value=sample.value.total,
                    )
                else:
                    assert isinstance(family, (_core.CounterMetricFamily, _core.GaugeMetricFamily))
                    family.add_metric(values, sample.value)
            yield family
