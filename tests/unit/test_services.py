"""What a registry's services own: two registries (two apps in one process) share no
supervision state, and the daemon's drain and ``--once`` hooks reach the right service."""

from __future__ import annotations

from pathlib import Path

from aegis import api
from aegis.core.config import load_settings
from aegis.notify.sender import deliver_pending
from aegis.scheduling.registry import Registry
from aegis.supervision.escalation import page_pending
from aegis.supervision.repository import ContainerRow
from aegis.supervision.service import Supervision


def supervision_of(registry: Registry) -> Supervision:
    service = next(s for s in registry.services if s.name == "docker_events")
    owner = getattr(service.run, "__self__", None)
    assert isinstance(owner, Supervision)
    return owner


def test_two_registries_share_no_supervision_state(tmp_path: Path) -> None:
    settings = load_settings({"AEGIS_HOME": str(tmp_path / "home"), "AEGIS_HOST": "h"})
    first, second = api.load_registry(settings), api.load_registry(settings)
    one, other = supervision_of(first), supervision_of(second)
    assert one is not other
    one.state.restarts.begin("h", "web", "0" * 64)
    assert one.state.restarts.in_progress("h", "web")
    assert not other.state.restarts.in_progress("h", "web")
    assert other.drain(0) is True  # nothing under way there
    assert one.drain(0) is False  # the daemon of the first app would wait for it
    one.state.restarts.end("h", "web")
    assert one.drain(0) is True
    one.state.kept.keep(ContainerRow(host="h", name="web", version=1))
    assert other.state.kept.of("h") == []


def test_the_daemon_hooks_of_aegis_own_services(tmp_path: Path) -> None:
    settings = load_settings({"AEGIS_HOME": str(tmp_path / "home")})
    services = {s.name: s for s in api.load_registry(settings).services}
    assert set(services) == {"http", "database_watch", "escalation_pager", "outbox_sender",
                             "docker_events", "label_jobs"}
    assert services["outbox_sender"].once is deliver_pending  # aegis run --once delivers
    # aegis run --once queues the pages due, before the sender delivers them
    assert services["escalation_pager"].once is page_pending
    assert list(services).index("escalation_pager") < list(services).index("outbox_sender")
    assert services["docker_events"].drain is not None  # shutdown waits for restarts
    assert services["http"].drain is None
    assert services["http"].once is None
