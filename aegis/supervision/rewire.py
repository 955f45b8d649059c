"""Dependants of a replaced network parent, recreated into the new one's namespace.

A container that shares another's network (``network_mode: container:P``, compose's
``service:P``, a VPN sidecar) is bound to P's container **id**. When P is replaced (an
image update, ``docker compose up -d``, ``docker rm -f`` and run again), the dependant
points at an id that no longer exists: a restart fails ("No such container"), and only a
recreate into the new P's namespace helps. ``NetworkParents`` remembers each dependant's
parent by name while the parent exists (from the sweep's listing, kept in the ``state``
table so a parent replaced while aegis was stopped is still known; in a sweep, a compose
dependant falls back to the one service it depends on). ``Rewirer`` finds such orphans on
the start of a container of a known parent's name and in every sweep, and recreates them
in the background (each claimed in the restart tracker, so the sweep's thread and the
watcher's never recreate one twice), recorded as
``container_recreated`` (``network_of``) without an incident or an alert of their own.
It also finishes what a daemon killed in the middle of a recreate left behind.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aegis.core.errors import StoreError
from aegis.core.logs import get_logger
from aegis.storage.events import EventType, Importance
from aegis.storage.runtime import Runtime
from aegis.supervision.docker import Sighting, docker_errors, inspected, sighting_from_listing
from aegis.supervision.protocol.labels import effective_stop_timeout_s
from aegis.supervision.records import SOURCE
from aegis.supervision.recreate import RecreateError, aside_of, recreate
from aegis.supervision.restarter import Refusal, RestartTracker


def being_replaced(seen: Sighting) -> bool:
    """Whether ``seen`` is a container on its way out while its successor takes its name:
    set aside by aegis's recreate, or renamed ``<its id's first 12>_<name>`` by compose
    (v1 and v2 both do, before creating the successor). Its id is no parent to keep."""
    return aside_of(seen.name) is not None or seen.name.startswith(f"{seen.id[:12]}_")


@dataclass(frozen=True)
class Orphan:
    """A dependant whose network parent's container is gone, and that parent's name."""

    dependant: Sighting
    parent_name: str | None  # None: not known (no memory of it, no compose service)


class NetworkParents:
    """Each dependant's network parent by name, learnt while the parent exists; shared by
    the sweep and the events watcher of one supervision."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, dict[str, dict[str, str]]] = {}  # host -> name -> parent
        self._told: set[tuple[str, str]] = set()  # (dependant id, parent id) skipped

    def first_skip(self, dependant_id: str, parent_id: str) -> bool:
        """Whether a dependant left alone is told of for the first time (once per pair,
        for the life of the supervision, not of one sweep)."""
        with self._lock:
            if (dependant_id, parent_id) in self._told:
                return False
            self._told.add((dependant_id, parent_id))
            return True

    def _of(self, runtime: Runtime) -> dict[str, dict[str, str]]:
        host = runtime.settings.host
        if host not in self._known:
            try:
                kept = runtime.store.get_state(f"network_parents:{host}")
            except StoreError:
                return {}  # not loaded yet: the next call tries again
            self._known[host] = dict(kept) if isinstance(kept, dict) else {}
        return self._known[host]

    def names(self, runtime: Runtime) -> set[str]:
        """The names of the parents it knows of."""
        with self._lock:
            return {parent["name"] for parent in self._of(runtime).values()}

    def learn(self, runtime: Runtime, seen: Sequence[Sighting]) -> None:
        """Note each dependant's parent that ``seen`` (a full listing) shows running."""
        by_id = {s.id: s for s in seen}
        with self._lock:
            known = self._of(runtime)
            before = dict(known)
            for dependant in seen:
                parent = by_id.get(dependant.network_parent or "")
                if parent is not None and not being_replaced(parent):
                    known[dependant.name] = {"id": parent.id, "name": parent.name}
            if known != before:
                with contextlib.suppress(StoreError):  # the next sweep writes it again
                    runtime.store.set_state(f"network_parents:{runtime.settings.host}",
                                            known)

    def orphans(self, runtime: Runtime, seen: Sequence[Sighting]) -> list[Orphan]:
        """The dependants in ``seen`` (a full listing) whose parent's id is gone, or is a
        container set aside by a recreate (its successor runs under its name)."""
        ids = {s.id for s in seen if not being_replaced(s)}
        with self._lock:
            known = dict(self._of(runtime))
        found = []
        for dependant in seen:
            parent_id = dependant.network_parent
            if not parent_id or parent_id in ids or being_replaced(dependant) \
                    or any(i.startswith(parent_id) for i in ids):
                continue
            remembered = known.get(dependant.name)
            name = (remembered["name"] if remembered and remembered["id"] == parent_id
                    else _compose_parent(dependant, seen))
            found.append(Orphan(dependant, name))
        return found


def _compose_parent(dependant: Sighting, seen: Iterable[Sighting]) -> str | None:
    """The container of the one compose service ``dependant`` depends on (compose adds a
    ``network_mode: service:X`` parent to ``depends_on``), if there is exactly one."""
    if not dependant.compose_project or len(dependant.depends_on) != 1:
        return None
    matches = [s.name for s in seen if s.compose_project == dependant.compose_project
               and s.compose_service == dependant.depends_on[0] and not being_replaced(s)]
    return matches[0] if len(matches) == 1 else None


class Rewirer:
    """Recreates the dependants of replaced parents, and finishes interrupted recreates."""

    def __init__(self, runtime: Runtime, tracker: RestartTracker, parents: NetworkParents, *,
                 refusal: Refusal, client_factory: Callable[[], Any] | None) -> None:
        """``client_factory``: recreate in threads of their own, each with its own client
        (None: in the calling thread, through the caller's)."""
        self.runtime = runtime
        self.tracker = tracker
        self.parents = parents
        self.refusal = refusal
        self.client_factory = client_factory
        self.host = runtime.settings.host
        self.log = get_logger().bind(host=self.host)

    def after_start(self, client: Any, name: str, now: datetime) -> None:
        """A container named ``name`` started: when it is a parent some dependant had,
        recreate the dependants whose replaced parent it is. The listing this needs is
        made off the caller's thread (the watcher's loop waits on no engine call) when
        there is a client factory."""
        if name not in self.parents.names(self.runtime):
            return
        if self.client_factory is None:
            self._after_start(client, name, now)
            return
        threading.Thread(target=self._after_start_in_thread, args=(name, now),
                         name=f"aegis-rewire-after-{name}", daemon=True).start()

    def _after_start(self, client: Any, name: str, now: datetime) -> None:
        self.sweep(client, [sighting_from_listing(entry) for entry in
                            client.api.containers(all=True)], now, parent=name)

    def _after_start_in_thread(self, name: str, now: datetime) -> None:
        assert self.client_factory is not None
        try:
            client = self.client_factory()
            try:
                self._after_start(client, name, now)
            finally:
                client.close()
        except Exception as exc:  # the engine or the database: the next sweep tries again
            self.log.warning("container_rewire_failed", parent=name, error=str(exc))

    def sweep(self, client: Any, seen: Sequence[Sighting], now: datetime, *,
              parent: str | None = None) -> list[threading.Thread]:
        """Learn the parents ``seen`` (a full listing) shows, finish interrupted
        recreates, and recreate every orphan whose parent runs again (only the
        dependants of ``parent``, when given). Returns the threads it started."""
        self.parents.learn(self.runtime, seen)
        if parent is None:
            self._finish_interrupted(client, seen)
        running = {s.name: s for s in seen if s.status == "running"}
        threads = []
        for orphan in self.parents.orphans(self.runtime, seen):
            new_parent = running.get(orphan.parent_name or "")
            if new_parent is None or (parent is not None and new_parent.name != parent):
                continue
            thread = self._rewire(client, orphan.dependant, new_parent, now)
            if thread is not None:
                threads.append(thread)
        return threads

    def _rewire(self, client: Any, dependant: Sighting, parent: Sighting,
                now: datetime) -> threading.Thread | None:
        refusal = self.refusal(dependant, now)
        if refusal is not None:
            if self.parents.first_skip(dependant.id, parent.id):
                self.runtime.store.record_event(
                    EventType.CONTAINER_DEPENDENT_SKIPPED,
                    f"{dependant.name} shares the network of {parent.name}, which was "
                    f"replaced, but is {refusal}: not recreated", importance=Importance.HIGH,
                    source=SOURCE, timestamp=now,
                    details={"container": dependant.name, "host": self.host,
                             "network_of": parent.name, "skipped_because": refusal})
            return None
        if not self.tracker.claim(self.host, dependant.name, dependant.id):
            return None  # being recreated (or restarted) by another thread right now
        if self.client_factory is None:
            try:
                self._recreate(client, dependant, parent, now)
            finally:
                self.tracker.end(self.host, dependant.name)
            return None
        thread = threading.Thread(target=self._in_thread, args=(dependant, parent, now),
                                  name=f"aegis-rewire-{dependant.name}", daemon=True)
        thread.start()
        return thread

    def _in_thread(self, dependant: Sighting, parent: Sighting, now: datetime) -> None:
        assert self.client_factory is not None
        try:
            client = self.client_factory()
            try:
                self._recreate(client, dependant, parent, now)
            finally:
                client.close()
        except Exception as exc:  # recorded in the log; the next sweep tries again
            self.log.error("container_rewire_crashed", container=dependant.name,
                           error=str(exc), exc_info=True)
        finally:
            self.tracker.end(self.host, dependant.name)

    def _recreate(self, client: Any, dependant: Sighting, parent: Sighting,
                  now: datetime) -> None:
        dependant = inspected(client, dependant)
        old_parent = dependant.network_parent or ""
        carried = {"container": dependant.name, "host": self.host,
                   "container_id": dependant.id[:12], "image": dependant.image,
                   "compose_project": dependant.compose_project,
                   "compose_service": dependant.compose_service, "network_of": parent.name,
                   "old_parent_id": old_parent[:12], "new_parent_id": parent.id[:12],
                   "reason": f"its network parent {parent.name} was replaced"}
        store = self.runtime.store
        try:
            done = recreate(client, dependant.id, network_parent=parent.id,
                            stop_timeout_s=effective_stop_timeout_s(dependant,
                                                                    self.runtime.settings))
        except RecreateError as exc:
            store.record_event(
                EventType.CONTAINER_RECREATE_FAILED,
                f"{dependant.name}: recreate into {parent.name}'s network failed: {exc}",
                importance=Importance.HIGH, source=SOURCE, timestamp=now,
                details={**carried, "error": str(exc), "step": exc.step,
                         "rolled_back": exc.rolled_back})
            return
        store.record_event(
            EventType.CONTAINER_RECREATED,
            f"{dependant.name} recreated into the network of {parent.name}, which was "
            f"replaced (its old container {old_parent[:12]} is gone)",
            importance=Importance.HIGH, source=SOURCE, timestamp=now,
            details={**carried, "new_container_id": done.new_id[:12],
                     "anonymous_volumes": list(done.anonymous_volumes)})

    def _finish_interrupted(self, client: Any, seen: Sequence[Sighting]) -> None:
        """A container left renamed aside by a daemon stopped in the middle of a
        recreate: removed when its successor runs under its name (its volumes kept),
        else given its name back and started."""
        names = {s.name: s for s in seen}
        for aside in seen:
            name = aside_of(aside.name)
            if name is None or self.tracker.in_progress(self.host, name):
                continue
            successor = names.get(name)
            try:
                if successor is not None and successor.status == "running":
                    client.api.remove_container(aside.id, v=False, force=True)
                elif successor is None:
                    client.api.rename(aside.id, name)
                    client.api.start(aside.id)
                else:
                    continue
            except docker_errors() as exc:
                self.log.warning("recreate_leftover_not_finished", container=aside.name,
                                 error=str(exc))
                continue
            self.log.warning("recreate_leftover_finished", container=name,
                             kept=successor is None)
