"""What aegis remembers of a dependant's network parent while compose replaces the parent
(real PostgreSQL, listings as the engine gives them): compose renames the container it
replaces ``<its id's first 12>_<name>`` before creating the successor, and a sweep that
lists in between must neither learn that name nor count that container as a parent."""

from __future__ import annotations

from typing import Any

from aegis import api
from aegis.supervision.docker import Sighting, sighting_from_listing
from aegis.supervision.rewire import NetworkParents

OLD = "a" * 64
NEW = "b" * 64
CLIENT = "c" * 64


def listed(container_id: str, name: str, network_mode: str = "bridge") -> Sighting:
    entry: dict[str, Any] = {"Id": container_id, "Names": [f"/{name}"], "State": "running",
                             "Status": "Up 1 minute", "Image": "busybox",
                             "HostConfig": {"NetworkMode": network_mode}}
    return sighting_from_listing(entry)


def test_a_parent_compose_renamed_aside_is_neither_learnt_nor_counted(app: api.Aegis) -> None:
    parents = NetworkParents()
    client = listed(CLIENT, "shop-client-1", f"container:{OLD}")
    parents.learn(app, [listed(OLD, "shop-vpn-1"), client])
    # compose's recreate, listed halfway: the old vpn renamed aside, its successor up
    halfway = [listed(OLD, f"{OLD[:12]}_shop-vpn-1"), listed(NEW, "shop-vpn-1"), client]
    parents.learn(app, halfway)
    assert parents.names(app) == {"shop-vpn-1"}
    [orphan] = parents.orphans(app, halfway)
    assert (orphan.dependant.name, orphan.parent_name) == ("shop-client-1", "shop-vpn-1")
