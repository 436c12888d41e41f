"""Export crwatch's metrics through OpenTelemetry (``pip install "crwatch[otel]"``).

::

    import crwatch.metrics, crwatch.otel

    crwatch.metrics.register(informer, name="widgets")
    crwatch.otel.instrument()          # the global MeterProvider, or meter_provider=...

Every family becomes an asynchronous (observable) instrument whose callback reads the
registered objects' ``statistics()`` when the SDK's reader collects
(https://opentelemetry.io/docs/specs/otel/metrics/api/#asynchronous-instrument-api):
counters become observable counters, gauges observable gauges. The OpenTelemetry API has
no asynchronous histogram, so each duration histogram is exported as two observable
counters, ``<name>_count`` and ``<name>_sum`` (their ratio is the mean). Names and labels
(attributes) are the same as with :mod:`crwatch.prometheus`.
"""

from __future__ import annotations

from collections.abc import Callable as _Callable
from collections.abc import Iterable as _Iterable

from opentelemetry import metrics as _otel

from . import _metrics
from ._version import __version__ as _version
from ._workqueue import Durations as _Durations

__all__ = ["instrument"]

_UNITS = {"seconds": "s", "": "1"}


class _Snapshot:
    """One ``registry.collect()`` per collection, shared by every instrument's callback.

    The SDK calls the callbacks of all asynchronous instruments one after the other, in
    the order the instruments were created, for each collection (opentelemetry-sdk,
    ``MeasurementConsumer.collect``). So the first family's callback reads the registry
    and the others reuse what it read: the objects' ``statistics()`` are read once per
    export, and the families of one export agree with each other.
    """

    def __init__(self, registry: _metrics.Registry) -> None:
        self._registry = registry
        self._metrics: dict[str, _metrics.Metric] = {}

    def get(self, name: str) -> _metrics.Metric | None:
        if name == _metrics.METRICS[0].name or not self._metrics:
            self._metrics = {m.info.name: m for m in self._registry.collect()}
        return self._metrics.get(name)


def _callback(
    snapshot: _Snapshot, name: str, part: _Callable[[_Durations], float] | None
) -> _Callable[[_otel.CallbackOptions], _Iterable[_otel.Observation]]:
    def observe(options: _otel.CallbackOptions) -> _Iterable[_otel.Observation]:
        metric = snapshot.get(name)
        if metric is None:
            return []
        observations = []
        for sample in metric.samples:
            value = sample.value
            if isinstance(value, _Durations):
                if part is None:
                    continue
                value = part(value)
            observations.append(_otel.Observation(value, dict(sample.labels)))
        return observations

    return observe


def instrument(
    *,
    meter_provider: _otel.MeterProvider | None = None,
    registry: _metrics.Registry | None = None,
) -> _otel.Meter:
    """Create the observable instruments of every crwatch metric family.

    Call it once per meter provider. The callbacks read the registry at each collection,
    so objects registered later are exported too.

    Args:
        meter_provider: where to create the instruments. Default: the global provider
            (``opentelemetry.metrics.get_meter_provider()``).
        registry: the crwatch registry to read. Default: ``crwatch.metrics.default_registry``.

    Returns:
        The ``crwatch`` meter the instruments belong to.
    """
    registry = _metrics.default_registry if registry is None else registry
    provider = _otel.get_meter_provider() if meter_provider is None else meter_provider
    meter = provider.get_meter("crwatch", _version)
    snapshot = _Snapshot(registry)
    for info in _metrics.METRICS:
        unit = _UNITS.get(info.unit, info.unit)
        if info.kind == "counter":
            meter.create_observable_counter(
                info.name,
                callbacks=[_callback(snapshot, info.name, None)],
                unit=unit,
                description=info.help,
            )
        elif info.kind == "gauge":
            meter.create_observable_gauge(
                info.name,
                callbacks=[_callback(snapshot, info.name, None)],
                unit=unit,
                description=info.help,
            )
        else:
            meter.create_observable_counter(
                f"{info.name}_count",
                callbacks=[_callback(snapshot, info.name, lambda d: d.count)],
                unit="1",
                description=f"{info.help} (how many)",
            )
            meter.create_observable_counter(
                f"{info.name}_sum",
                callbacks=[_callback(snapshot, info.name, lambda d: d.total)],
                unit=unit,
                description=f"{info.help} (their sum)",
            )
    return meter
