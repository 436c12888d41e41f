"""The soak, CI-sized: an Informer under churn and faults does not grow and converges."""

from __future__ import annotations

import pytest

from soak import Sample, soak, trends

pytestmark = pytest.mark.anyio


def _samples(tasks: list[int], depth: list[int] | None = None) -> list[Sample]:
    depth = depth or [0] * len(tasks)
    pairs = enumerate(zip(tasks, depth, strict=True))
    return [Sample(float(i), 100.0, t, 10, (d,), 10) for i, (t, d) in pairs]


def test_trends_flag_steady_growth_only() -> None:
    """The growth check flags a series that climbs, not one that wobbles or is flat."""
    flat = trends(_samples([10, 11, 10, 11, 10, 11, 10, 11, 10, 11]), warmup=0, buffer_size=8)
    assert not any(t.growing for t in flat)
    climbing = trends(_samples(list(range(10, 30, 2))), warmup=0, buffer_size=8)
    assert [t.name for t in climbing if t.growing] == ["tasks"]
    deep = trends(_samples([10] * 10, list(range(0, 50, 5))), warmup=2, buffer_size=8)
    assert [t.name for t in deep if t.growing] == ["depth 0"]
    with pytest.raises(ValueError, match="too few samples"):
        trends(_samples([1, 2, 3]), warmup=0, buffer_size=8)


async def test_soak_ci_sized(capsys: pytest.CaptureFixture[str]) -> None:
    """A short soak: 2,000 objects, churn, a fault a second; flat tasks/fds/depths, converged.

    ``nox -s soak`` runs the full-sized one (10,000 objects, minutes).
    """
    result = await soak(seconds=8, objects=2_000, rate=200, fault_every=1.0, sample_every=0.2)
    out = capsys.readouterr().out
    assert result.faults >= 6
    assert result.changes > 1_000
    assert result.converged, out
    assert result.ok, out
    assert all(s.objects == 2_000 for s in result.samples)
