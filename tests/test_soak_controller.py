"""The controller soak (``bench/soak_controller.py``): a CI-sized run and its growth verdict.

The full soak runs for minutes over 10,000 objects; here 1,000 objects churn for a few
seconds under faults, which is enough to catch a leak of tasks or file descriptors per
fault or a queue that never drains, and the growth verdict itself is checked on
synthetic samples (a leak is flagged, noise is not).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "soak_controller.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_controller", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


soak = _load()


def _samples(metric: str, values: list[float]) -> list[dict[str, float]]:
    flat = {"rss_mb": 100.0, "tasks": 20.0, "fds": 20.0, "queue_depth": 0.0}
    flat["subscriber_depth"] = 0.0
    return [{**flat, "t": float(i), metric: value} for i, value in enumerate(values)]


@pytest.mark.parametrize(
    ("metric", "step"),
    [("tasks", 1.0), ("fds", 0.5), ("rss_mb", 0.5), ("queue_depth", 10.0)],
)
def test_steady_growth_is_flagged(metric: str, step: float) -> None:
    """A metric that rises at every sample (a leak per fault, a backlog) fails the soak."""
    verdict = soak.growth(_samples(metric, [i * step for i in range(60)]), objects=100)
    per_minute, rise, grows = verdict[metric]
    assert grows
    assert per_minute == pytest.approx(step * 60)
    assert rise > 0
    others = [m for m in soak.METRICS if m != metric]
    assert not any(verdict[m][2] for m in others)


def test_noise_and_a_warm_up_plateau_are_not_growth() -> None:
    """Jitter around a level, and a level reached early, pass: only steady growth fails."""
    jitter = [20.0 + (3.0 if i % 2 else -3.0) for i in range(60)]
    assert not soak.growth(_samples("tasks", jitter), objects=100)["tasks"][2]
    plateau = [min(100.0 + i, 105.0) for i in range(60)]  # +5 MiB, then flat
    assert not soak.growth(_samples("rss_mb", plateau), objects=100)["rss_mb"][2]
    falling = [500.0 - 5 * i for i in range(60)]  # a queue draining after a burst
    assert not soak.growth(_samples("queue_depth", falling), objects=100)["queue_depth"][2]


def test_ci_sized_soak_stays_flat_and_catches_up() -> None:
    """1,000 objects under churn and a fault a second for 8 s: nothing grows, all caught up.

    Runs the script as users do (a fresh process, so RSS, tasks and fds are its own) and
    checks its exit status and its report.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--objects", "1000", "--seconds", "8", "--rate", "100", "--fault-every", "1"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "OK"
    for metric in soak.METRICS:
        assert any(line.startswith(metric) and line.endswith("flat") for line in lines)
    summary = lines[0]
    assert "1000 objects" in summary
    assert " 0 faults" not in summary
