"""One entry point for every check: ``nox -s lint typing docs tests``."""

from __future__ import annotations

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
    """Run the whole test suite."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    _install(session, "lint", project=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """Type-check with mypy --strict: the package and the typing-only API file."""
    _install(session, "typing")
    session.run("mypy")


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
