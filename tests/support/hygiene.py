"""The machine after a test run as it was before: ``make test`` on a user's own Docker
host must leave it as found. A pytest plugin (tests/conftest.py loads it) compares, in
the process that runs the session (the controller of a parallel run, never its workers,
whose engines come and go meanwhile), a snapshot from before the first test with one
from after the last:

- the host's ``docker0`` link, when it was there (an engine started with ``--bridge none``
  in the host's network namespace deletes it);
- no network namespace of this run's left behind (``aegis-test-RUN-*``, RUN the pid of
  the process that runs the session: another run on this machine meanwhile, with its
  private engines, is none of this one's business);
- on the suite's engine, no new container, network or volume, and no new image but the
  cached ones of tests/images (``CACHED``), untagged images included.

What changed fails the run (exit status 1), each leftover named in the summary.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.images import CACHED, PREFIX
from tests.support.engines import RUN, run_id

NETNS_DIR = Path("/var/run/netns")
SYS_NET = Path("/sys/class/net")
BEFORE = pytest.StashKey["Snapshot"]()
LEFTOVERS = pytest.StashKey[list[str]]()


@dataclass(frozen=True)
class Snapshot:
    """What the check compares, taken before the run and after it."""

    docker0: bool
    netns: frozenset[str]
    engine: dict[str, frozenset[str]] | None = field(default=None)  # None: not reachable


def take_snapshot(client: Any | None) -> Snapshot:
    """The machine now: docker0, this run's namespaces, and ``client``'s engine."""
    netns = frozenset(p.name for p in NETNS_DIR.glob(f"{PREFIX}-{run_id()}-*")) \
        if NETNS_DIR.is_dir() else frozenset()
    return Snapshot((SYS_NET / "docker0").exists(), netns,
                    engine_objects(client) if client is not None else None)


def engine_objects(client: Any) -> dict[str, frozenset[str]] | None:
    """Containers, networks, volumes and top-level images (with their tags) by kind."""
    try:
        images = client.api.images()  # top level: tagged and dangling, not build layers
        return {
            "containers": frozenset(f"{c['Id'][:12]} {c['Names'][0].lstrip('/')}"
                                    for c in client.api.containers(all=True)),
            "networks": frozenset(f"{n['Id'][:12]} {n['Name']}" for n in client.api.networks()),
            "volumes": frozenset(v["Name"]
                                 for v in client.api.volumes().get("Volumes") or []),
            "images": frozenset(f"{i['Id'].removeprefix('sha256:')[:12]} "
                                f"{','.join(tags_of(i)) or '<none>'}" for i in images)}
    except Exception:  # the engine went away: nothing to compare
        return None


def tags_of(image: Any) -> list[str]:
    """The tags of an image of the engine's listing."""
    return [tag for tag in image.get("RepoTags") or [] if tag and tag != "<none>:<none>"]


def leftovers(before: Snapshot, after: Snapshot) -> list[str]:
    """What the session changed and should not have, one line each."""
    found = []
    if before.docker0 and not after.docker0:
        found.append("the host's docker0 interface is gone (an engine started with "
                     "--bridge none in the host's network namespace deletes it)")
    found += [f"network namespace {name}" for name in sorted(after.netns - before.netns)]
    if before.engine is not None and after.engine is not None:
        for kind in ("containers", "networks", "volumes"):
            found += [f"{kind[:-1]} {name}"
                      for name in sorted(after.engine[kind] - before.engine[kind])]
        for image in sorted(after.engine["images"] - before.engine["images"]):
            if any(tag not in CACHED for tag in image.partition(" ")[2].split(",")):
                found.append(f"image {image}")
    return found


def client_or_none() -> Any | None:
    """A client of the engine at DOCKER_HOST, or None when none answers."""
    with contextlib.suppress(Exception):
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    return None


def _checks(config: pytest.Config) -> bool:
    """Whether this process checks: it runs the session and is no xdist worker."""
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _checks(config):
        os.environ[RUN] = str(os.getpid())  # before xdist starts its workers


def pytest_sessionstart(session: pytest.Session) -> None:
    if _checks(session.config):
        client = client_or_none()
        session.config.stash[BEFORE] = take_snapshot(client)
        if client is not None:
            client.close()


@pytest.hookimpl(trylast=True)  # after xdist has stopped its workers
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not _checks(config) or BEFORE not in config.stash:
        return
    client = client_or_none()
    found = leftovers(config.stash[BEFORE], take_snapshot(client))
    if client is not None:
        client.close()
    config.stash[LEFTOVERS] = found
    if found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(LEFTOVERS, [])
    if found:
        terminalreporter.write_sep("=", "the test session left this machine changed",
                                   red=True, bold=True)
        for line in found:
            terminalreporter.write_line(f"  {line}")
