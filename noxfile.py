"""Developer sessions: `nox -s tests`, `nox -s lint`. CI runs `.ci/run`, which runs the same tests."""

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("torch==2.13.0")  # pinned first: a bare `torch` pulls a CUDA build
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "harness", "tests", "benchmarks")
    session.run("ruff", "format", "--check", "harness", "tests", "benchmarks")
