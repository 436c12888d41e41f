"""One entry point for every check: ``nox -s lint typing docs tests``."""

from __future__ import annotations

import json
import subprocess

import nox

nox.needs_version = ">=2025.2"
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typing", "docs", "tests"]
nox.options.reuse_existing_virtualenvs = False

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, *groups: str, project: bool = True) -> None:
    # The venv's own pip is new enough for PEP 735 groups once upgraded.
    session.install("--upgrade", "pip>=25.1")
    if project:
        session.install("-e", ".")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (Hypothesis derandomized: the same examples every run)."""
    _install(session, "test")
    session.run("pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"})


#: The randomized suites: Hypothesis properties and the seeded fault-schedule tests.
RANDOMIZED = [
    "tests/test_machine.py",
    "tests/test_backoff.py",
    "tests/test_wire.py",
    "tests/test_store.py",
    "tests/test_middleware.py",
    "tests/test_predicates.py",
    "tests/testing/test_fake_state_model.py",
    "tests/test_watch.py",
    "tests/test_informer.py",
    "tests/test_workqueue.py",
    "tests/test_ratelimit.py",
    "tests/test_controller_chaos.py",
]


@nox.session
def chaos(session: nox.Session) -> None:
    """Run the randomized suites with fresh random examples and seeds (nightly style).

    ``nox -s chaos -- --hypothesis-seed=N`` replays a Hypothesis run; a failing fault
    schedule names its seed in the test id. ``CRWATCH_CHAOS_SEEDS`` (default 12) sets how
    many fresh schedules each seeded test adds; ``HYPOTHESIS_PROFILE=nightly`` draws more.
    """
    _install(session, "test")
    env = {
        "HYPOTHESIS_PROFILE": session.env.get("HYPOTHESIS_PROFILE", "chaos"),
        "CRWATCH_CHAOS_SEEDS": session.env.get("CRWATCH_CHAOS_SEEDS", "12"),
    }
    session.run(
        "pytest",
        *RANDOMIZED,
        *session.posargs,
        env=env,
    )


@nox.session
def mutate(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the pure core: _machine, _wire, _store, _backoff, _coalesce.

    Configured in pyproject.toml ([tool.mutmut]); prints the score. Takes minutes.
    ``nox -s mutate -- <mutant-name-glob>`` runs a subset.
    """
    _install(session, "mutate")
    session.run("mutmut", "run", *session.posargs)
    session.run("mutmut", "export-cicd-stats")
    session.run("python", "-c", _MUTATION_SCORE)


_MUTATION_SCORE = """
import json
s = json.load(open("mutants/mutmut-cicd-stats.json"))
done = s["killed"] + s["survived"] + s["timeout"] + s["suspicious"]
print(f"mutants: {s['total']}, killed {s['killed']}, timeout {s['timeout']}, "
      f"survived {s['survived']}, no tests {s['no_tests']}, skipped {s['skipped']}")
print(f"score: {(s['killed'] + s['timeout']) / max(1, done):.1%} of mutants that ran")
"""


@nox.session
def soak(session: nox.Session) -> None:
    """Soak an Informer, then a Controller, over 10,000 objects: ``nox -s soak -- --minutes 10``.

    Steady churn and periodic faults against FakeApiServer; samples RSS, tasks, fds,
    subscriber and queue depths, prints their slopes after warm-up and fails on steady
    growth. The options (``--minutes``, ``--seconds``, ``--objects``, ``--seed``) go to both.
    """
    _install(session)
    session.run("python", "tests/soak.py", *session.posargs)
    session.run("python", "bench/soak_controller.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    _install(session, "lint", project=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


#: The public modules whose API pyright's ``--verifytypes`` must find fully typed.
PUBLIC_MODULES = [
    "crwatch",
    "crwatch.compat",
    "crwatch.metrics",
    "crwatch.otel",
    "crwatch.prometheus",
    "crwatch.testing",
]


@nox.session
def typing(session: nox.Session) -> None:
    """Type-check with mypy --strict, then require pyright's type completeness at 100%.

    ``pyright --verifytypes`` checks what a user's type checker sees of each public module:
    every exported symbol (and every type its signatures reach) with a known type.
    """
    _install(session, "typing")
    session.run("mypy")
    failed = []
    for module in PUBLIC_MODULES:
        # pyright exits 1 when it reports errors; the score is read from its JSON report so
        # that anything below 100% fails too, whatever the exit code says.
        output = session.run(
            "pyright",
            "--verifytypes",
            module,
            "--ignoreexternal",
            "--outputjson",
            silent=True,
            success_codes=[0, 1],
            stderr=subprocess.DEVNULL,
        )
        report = json.loads(str(output))
        score = report["typeCompleteness"]["completenessScore"]
        session.log(f"pyright --verifytypes {module}: {score:.1%}")
        if score < 1:
            failed.append(module)
            for symbol in report["typeCompleteness"]["symbols"]:
                for diagnostic in symbol["diagnostics"]:
                    if diagnostic["severity"] == "error":
                        session.log(f"  {symbol['name']}: {diagnostic['message']}")
    if failed:
        session.error(f"type completeness below 100% for {', '.join(failed)}")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors."""
    _install(session, "docs")
    # Not nitpicky (-n): without network there is no intersphinx inventory for the stdlib.
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: embedded fake cluster, a watcher, events printed."""
    _install(session)
    session.run("crwatch", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks under bench/ and write bench/results/."""
    _install(session, "bench")
    session.run("python", "bench/run.py", *session.posargs)
