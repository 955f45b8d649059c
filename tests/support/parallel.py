"""A pytest plugin (tests/conftest.py loads it) for running the suite in parallel with
pytest-xdist (``pytest -n N --dist loadgroup``), safely:

- Each worker runs its Docker tests on an engine of its own (``worker_engine``): a private
  dockerd in a network namespace (engines.py), which DOCKER_HOST names in the worker, its
  daemons included. Tests that run ``aegis run`` or aegis's supervisor act on every
  health-checked container of their engine, or every one labelled ``aegis.enable=true``;
  two of them on one engine at once would strike and restart each other's containers.
  The engine the suite was pointed at stays the end-to-end test's (``suite_engine_url``),
  where the cached stack images are. Where no private engine can run (no root), every
  Docker test, the end-to-end ones with them, goes to one worker instead (the ``engine``
  group), one after another, on that engine.
- The browser tests share one worker (one chromium), and so do the two end-to-end tests
  (one aegis image, and each stack's aegis acts on every health-checked container of the
  engine: one stack at a time); tests/browser and tests/e2e are those groups. Where
  every Docker test goes to the ``engine`` group, so does the browser test marked
  ``docker``: the browser tests then run on two workers, each with its chromium.
- A test marked ``serial`` needs a quiet machine: its checks bound real time (a strike
  timer due on time, nothing run in a window of seconds, a reconnection within 10 s), it
  makes outages (an engine restarted or withheld, PostgreSQL stopped for a minute) or
  kills daemons, or it counts a server's connections. Every fault test (tests/faults) is
  one. ``make test`` runs them after the parallel run, in a run of their own, a few at a
  time: each on a private engine, in a worker with its own PostgreSQL, and none beside
  the image builds, browsers and dozens of daemons of the parallel run.

Without xdist (``make unit``, one file) none of this applies: the tests run
one after another on the engine at DOCKER_HOST, as they always did. A parallel run that
selects serial tests with the others runs them beside the others: fine for a developer's
look, not what ``make test`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engines import private_engine, private_engine_available

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
SUITE_ENGINE = pytest.StashKey[str]()
TESTS = Path(__file__).resolve().parents[1]
# tests that share one worker, by folder
GROUPS = {TESTS / "browser": "browser", TESTS / "e2e": "e2e"}
SERIAL = TESTS / "faults"  # every test in it is marked serial


def in_worker(config: pytest.Config) -> bool:
    """Whether this process is a worker of a parallel run."""
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SUITE_ENGINE] = os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config,
                                  items: list[pytest.Item]) -> Iterator[None]:
    """Marks and groups before the others run (before -m selects and xdist reads the
    groups); then, in a worker, a refusal to run when xdist did not group the tests it
    was asked to, as it does not on pytest 9.2 (pytest-dev/pytest-xdist#1386): grouped
    tests run at once would disturb each other."""
    for item in items:
        if SERIAL in item.path.parents:
            item.add_marker(pytest.mark.serial)
    if in_worker(config):
        shared_engine = private_engine_available() is not None
        for item in items:
            group = group_of(item, shared_engine)
            if group:
                item.add_marker(pytest.mark.xdist_group(group))
    yield
    if in_worker(config) and config.getvalue("loadgroup"):
        for item in items:
            for mark in item.iter_markers("xdist_group"):
                if not item.nodeid.endswith(f"@{mark.args[0]}"):
                    raise pytest.UsageError(
                        f"pytest-xdist did not put {item.nodeid} in its group "
                        f"{mark.args[0]} (pytest-dev/pytest-xdist#1386 on pytest 9.2): "
                        "install the pytest that pyproject.toml's dev extra names")


def group_of(item: pytest.Item, shared_engine: bool) -> str | None:
    """The xdist group of ``item``: when the workers share one engine,
    ``engine`` for every Docker test (the end-to-end ones included); else its folder's;
    None: any worker, any time."""
    if shared_engine and item.get_closest_marker("docker"):
        return "engine"
    return next((name for folder, name in GROUPS.items() if folder in item.path.parents),
                None)


def suite_engine_url(config: pytest.Config) -> str:
    """The engine the suite was pointed at (DOCKER_HOST when the run began), where the
    cached test images are: a worker's own engine is not."""
    return config.stash[SUITE_ENGINE]


@pytest.fixture(scope="session", autouse=True)
def worker_engine(request: pytest.FixtureRequest) -> Iterator[None]:
    """In a worker of a parallel run on a machine that can run one, a private dockerd for
    the worker's tests, named by DOCKER_HOST while they run; removed with every container
    on it afterwards."""
    if not in_worker(request.config) or private_engine_available() is not None:
        yield
        return
    engine = private_engine("wk")
    engine.start()
    before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = engine.url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = before
        engine.tear_down()
