"""Recreate a container through the Docker API, as a supervisor without compose files must:
a new container with the old one's configuration under the same name.

The old one is stopped and renamed aside, the new one created (its networks joined, with
their aliases), and started; only then is the old one removed. On any failure the new one
is removed, the old one gets its name back and is started again, and the error says which
step failed. Nothing is lost: bind mounts and named volumes are mounted again, anonymous
volumes are mounted by name into the new container (never removed, never left dangling),
and every label stays, compose's too, so ``docker compose ps`` still knows it.

``creation`` is the pure part: what to create, from an inspect.
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass, field
from typing import Any

from aegis.supervision.docker import docker_errors

# Config keys carried to the new container (Image, Cmd, Entrypoint, Env, Labels, User,
# Hostname, the health check...); what the engine fills in itself stays out.
CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
               "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
               "Healthcheck", "Image", "Volumes", "WorkingDir", "Entrypoint", "MacAddress",
               "Labels", "StopSignal", "StopTimeout", "Shell")
# What a container in another's network namespace must not set: the engine refuses it.
NOT_IN_ANOTHERS_NETWORK = ("Hostname", "Domainname", "ExposedPorts", "MacAddress")
ASIDE_SUFFIX = "-aegis-replaced"
_ASIDE = re.compile(rf"^(?P<name>.+){ASIDE_SUFFIX}-(?P<id>[0-9a-f]{{12}})$")


class RecreateError(Exception):
    """A recreate that failed at ``step``; ``rolled_back`` tells whether the old container
    is back under its name (and started, when it was running)."""

    def __init__(self, step: str, error: str, rolled_back: str) -> None:
        super().__init__(f"{step} failed: {error}; {rolled_back}")
        self.step = step
        self.error = error
        self.rolled_back = rolled_back


@dataclass(frozen=True)
class Creation:
    """What to create: the name, the config (with ``HostConfig`` and the first network's
    ``NetworkingConfig``, as the engine's create takes them), and the other networks to
    join before the start."""

    name: str
    config: dict[str, Any]
    more_networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    anonymous_volumes: tuple[str, ...] = ()  # mounted by name into the new container


@dataclass(frozen=True)
class Recreated:
    name: str
    old_id: str
    new_id: str
    anonymous_volumes: tuple[str, ...]


def is_aside(name: str) -> bool:
    """Whether ``name`` is the one a container gets while it is being replaced."""
    return _ASIDE.match(name) is not None


def aside_of(name: str) -> str | None:
    """The name a container set aside had before (None: ``name`` is not one)."""
    match = _ASIDE.match(name)
    return match.group("name") if match else None


def creation(attrs: dict[str, Any], network_parent: str | None = None) -> Creation:
    """The container an inspect (``attrs``) describes, to be created again; with
    ``network_parent`` (a container id), in that container's network namespace instead
    of the one it had."""
    config = {key: copy.deepcopy(value) for key, value in (attrs.get("Config") or {}).items()
              if key in CONFIG_KEYS and value not in (None, "", [], {})}
    host = copy.deepcopy(attrs.get("HostConfig") or {})
    old_id = str(attrs["Id"])
    if network_parent is not None:
        host["NetworkMode"] = f"container:{network_parent}"
    mode = str(host.get("NetworkMode") or "default")
    if mode.startswith("container:"):
        for key in NOT_IN_ANOTHERS_NETWORK:
            config.pop(key, None)
    elif config.get("Hostname") == old_id[:12]:
        config.pop("Hostname")  # the engine's default, the old id: the new one gets its own
    anonymous = _carry_anonymous_volumes(attrs, host)
    networks = _endpoints(attrs, old_id)
    first = mode if mode in networks else ("bridge" if mode == "default" else None)
    config["HostConfig"] = host
    if first is not None and first in networks:
        config["NetworkingConfig"] = {"EndpointsConfig": {first: networks.pop(first)}}
    return Creation(name=str(attrs.get("Name") or "").lstrip("/"), config=config,
                    more_networks=networks,
                    anonymous_volumes=tuple(anonymous))


def _carry_anonymous_volumes(attrs: dict[str, Any], host: dict[str, Any]) -> list[str]:
    """Mount each anonymous volume (a ``VOLUME`` of the image, a ``-v /path``, a
    ``--mount type=volume`` without a source) by name in ``host``, where the engine would
    otherwise make a new, empty one for the new container; returns their names."""
    used = {str(m["Destination"]): m for m in attrs.get("Mounts") or []
            if m.get("Type") == "volume" and m.get("Name") and m.get("Destination")}
    carried = []
    for mount in host.get("Mounts") or []:
        target = str(mount.get("Target") or "")
        if mount.get("Type") == "volume" and not mount.get("Source") and target in used:
            mount["Source"] = used[target]["Name"]
            carried.append(str(mount["Source"]))
    binds = list(host.get("Binds") or [])
    named = {str(bind).split(":", 1)[0] for bind in binds}
    targets = {str(bind).split(":")[1] for bind in binds if ":" in str(bind)}
    targets |= {str(mount.get("Target") or "") for mount in host.get("Mounts") or []}
    for target, mount in used.items():
        if mount["Name"] not in named and target not in targets:
            binds.append(f"{mount['Name']}:{target}" + ("" if mount.get("RW", True) else ":ro"))
            carried.append(str(mount["Name"]))
    host["Binds"] = binds or None
    return carried


def _endpoints(attrs: dict[str, Any], old_id: str) -> dict[str, dict[str, Any]]:
    """Each network the container is on, as the create (or a connect) takes it: its
    aliases (less the old id, which the engine adds itself), links and fixed addresses."""
    found = {}
    for name, endpoint in ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items():
        aliases = [alias for alias in endpoint.get("Aliases") or []
                   if alias not in (old_id, old_id[:12])]  # "db" may begin an id too
        wanted = {"Aliases": aliases or None, "Links": endpoint.get("Links"),
                  "IPAMConfig": endpoint.get("IPAMConfig"),
                  "DriverOpts": endpoint.get("DriverOpts")}
        found[str(name)] = {key: value for key, value in wanted.items() if value}
    return found


def recreate(client: Any, container: str, *, stop_timeout_s: float,
             network_parent: str | None = None) -> Recreated:
    """Recreate ``container`` (an id or name) on ``client``'s engine; with
    ``network_parent``, joined to that container's network namespace. Raises
    ``RecreateError`` (after the roll-back) when a step fails."""
    try:
        attrs = client.api.inspect_container(container)
    except docker_errors() as exc:
        raise RecreateError("inspect", str(exc), "nothing was changed") from exc
    if (attrs.get("HostConfig") or {}).get("AutoRemove"):
        raise RecreateError("check", "it runs with --rm: stopping it would remove it and its "
                            "anonymous volumes", "nothing was changed")
    wanted = creation(attrs, network_parent)
    old_id, running = str(attrs["Id"]), bool((attrs.get("State") or {}).get("Running"))
    aside = f"{wanted.name}{ASIDE_SUFFIX}-{old_id[:12]}"
    api = client.api
    if running:
        _step(api, "stop", old_id, lambda: api.stop(old_id, timeout=int(stop_timeout_s)))
    _step(api, "rename", old_id, lambda: api.rename(old_id, aside), restart_old=running)
    new_id = ""
    try:
        new_id = str(_create(api, wanted)["Id"])
        for network, endpoint in wanted.more_networks.items():
            api.connect_container_to_network(
                new_id, network, aliases=endpoint.get("Aliases"), links=endpoint.get("Links"),
                ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address"),
                ipv6_address=(endpoint.get("IPAMConfig") or {}).get("IPv6Address"))
        api.start(new_id)
    except docker_errors() as exc:
        step = "start" if new_id else "create"
        if new_id:
            with contextlib.suppress(*docker_errors()):
                api.remove_container(new_id, force=True)
        raise RecreateError(step, str(exc), _roll_back(api, old_id, wanted.name, running)
                            ) from exc
    with contextlib.suppress(*docker_errors()):  # the new one runs: a leftover is harmless
        api.remove_container(old_id, v=False, force=True)
    return Recreated(wanted.name, old_id, new_id, wanted.anonymous_volumes)


def _create(api: Any, wanted: Creation) -> Any:
    """The engine's create with the whole config (docker-py's ``create_container`` builds
    its own from keyword arguments and would drop what it does not know)."""
    url = api._url("/containers/create")
    return api._result(api._post_json(url, data=wanted.config, params={"name": wanted.name}),
                       True)


def _step(api: Any, step: str, old_id: str, call: Any, *, restart_old: bool = False
          ) -> None:
    """One step before the new container exists; on failure the old one is as it was
    (started again after ``restart_old``)."""
    try:
        call()
    except docker_errors() as exc:
        undone = "nothing was changed"
        if restart_old:
            with contextlib.suppress(*docker_errors()):
                api.start(old_id)
            undone = "the old container was started again"
        raise RecreateError(step, str(exc), undone) from exc


def _roll_back(api: Any, old_id: str, name: str, running: bool) -> str:
    """The old container back under its name (and started, if it ran): what was done."""
    try:
        api.rename(old_id, name)
    except docker_errors() as exc:
        return f"rolling back failed too: the old container could not get its name back ({exc})"
    if not running:
        return f"rolled back: the old container is {name} again"
    try:
        api.start(old_id)
    except docker_errors() as exc:
        return f"rolled back: the old container is {name} again, but did not start ({exc})"
    return f"rolled back: the old container is {name} again and running"
