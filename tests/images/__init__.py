"""Every image the tests run, built here on the engine at DOCKER_HOST so that no image
registry is needed. The test fixtures, the private-engine fault tests, the benchmarks and
developers (``python -m tests.images``) all build them through this module.

Every name starts with ``aegis-test``. The images in ``CACHED`` stay on the engine between
runs: the Debian roots are made once per machine with debootstrap (``debootstrap.sh``),
the small images on top of them are rebuilt from their Dockerfiles each session, which
takes a second when nothing changed. The suite's leftover check allows these and nothing
else; the aegis image itself (the repository's Dockerfile) is built per session and
removed afterwards.

- ``aegis-test-busybox``: FROM scratch with Debian's static busybox, for test containers
- ``aegis-test-base:bookworm-python3``: python3 and python3-venv, the Dockerfile's BASE
- ``aegis-test-base:bookworm-postgresql``: Debian's PostgreSQL, under the stand-in below
- ``aegis-test-postgres``: stand-in for ``postgres:16`` (``postgres/``)
- ``aegis-test-socket-proxy``: stand-in for the docker-socket-proxy (``socket_proxy/``)
- ``aegis-test-discord``: ``tests/support/discord.py`` as a compose service
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PREFIX = "aegis-test"
BUSYBOX = Path("/bin/busybox")
TEST_IMAGE = "aegis-test-busybox:latest"
PYTHON_ROOT = "aegis-test-base:bookworm-python3"
POSTGRES_ROOT = "aegis-test-base:bookworm-postgresql"
POSTGRES_IMAGE = "aegis-test-postgres:latest"
SOCKET_PROXY_IMAGE = "aegis-test-socket-proxy:latest"
DISCORD_IMAGE = "aegis-test-discord:latest"
PROXY_SCRIPT = HERE / "socket_proxy" / "proxy.py"
# debootstrap --include of each root
ROOTS = {PYTHON_ROOT: "python3,python3-venv,ca-certificates",
         POSTGRES_ROOT: "postgresql-15"}
CACHED = (TEST_IMAGE, PYTHON_ROOT, POSTGRES_ROOT, POSTGRES_IMAGE, SOCKET_PROXY_IMAGE,
          DISCORD_IMAGE)
DEBOOTSTRAP_TIMEOUT_S = 1800
BUSYBOX_DOCKERFILE = (b"FROM scratch\nCOPY busybox /bin/busybox\n"
                      b'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n')
# What the aegis image's build context holds: what a checkout has, nothing generated.
AEGIS_CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")
AEGIS_CONTEXT_PACKAGES = ("aegis", "jobs")
# the image id each step of a classic `docker build` log names
_STEP_IMAGE = re.compile(r"(?:---> |Successfully built )([0-9a-f]{12})\b")


def socket_proxy_profile() -> dict[str, str]:
    """The environment compose.yaml gives its socket-proxy service: the allow-list."""
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return {key: str(value)
            for key, value in compose["services"]["socket-proxy"]["environment"].items()}


class ImageError(RuntimeError):
    """An image could not be built; the message says which one and why."""


def build_busybox(client: Any) -> str:
    """Build (or rebuild: a cached build is instant) the busybox image on ``client``'s
    engine and return its tag. Raises FileNotFoundError without busybox-static."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static")
    return build(client, TEST_IMAGE, {"Dockerfile": BUSYBOX_DOCKERFILE, "busybox": BUSYBOX})


def build(client: Any, tag: str, files: dict[str, bytes | Path],
          buildargs: dict[str, str] | None = None) -> str:
    """``docker build`` of a context holding ``files`` (name -> content or a file), tagged
    ``tag``. When the build replaces the image ``tag`` named before, that image is removed,
    so a changed Dockerfile leaves no untagged image behind."""
    import docker.errors

    before = _image_id(client, tag)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, content in files.items():
            if isinstance(content, Path):
                tar.add(str(content), arcname=name)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    context.seek(0)
    try:
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True,
                            forcerm=True, buildargs=buildargs or {})
    except docker.errors.BuildError as exc:
        lines = [str(step.get("stream") or step.get("error") or "") for step in exc.build_log]
        raise ImageError(f"building {tag} failed: {exc}; "
                         f"{''.join(lines)[-1500:]}") from exc
    if before is not None and before != _image_id(client, tag):
        with contextlib.suppress(docker.errors.APIError):  # still used by a container
            client.images.remove(before)
    return tag


def _image_id(client: Any, tag: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(tag).id)
    except docker.errors.ImageNotFound:
        return None


def build_root(client: Any, tag: str) -> str:
    """One of the Debian roots in ``ROOTS``, made with debootstrap unless the engine has it
    (needs root, debootstrap and the docker command; several minutes the first time)."""
    if _image_id(client, tag) is not None:
        return tag
    if shutil.which("debootstrap") is None:
        raise ImageError(f"{tag} is missing and debootstrap is not installed to build it "
                         "(apt-get install debootstrap)")
    # the script imports the root with the docker command: into the engine of ``client``,
    # which in a parallel run is not the one DOCKER_HOST names (that is the worker's own)
    result = subprocess.run(["bash", str(HERE / "debootstrap.sh"), tag, ROOTS[tag]],
                            capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT_S,
                            check=False, env={**os.environ, "DOCKER_HOST": engine_url(client)})
    if result.returncode != 0:
        raise ImageError(f"building {tag} failed: {result.stderr.strip()[-1500:]}")
    return tag


def engine_url(client: Any) -> str:
    """The address of the engine ``client`` speaks to, as DOCKER_HOST takes it."""
    socket_path = getattr(client.api.get_adapter(client.api.base_url), "socket_path", None)
    if socket_path:
        return f"unix://{socket_path}"
    return str(client.api.base_url).replace("https://", "tcp://").replace("http://", "tcp://")


def build_roots(client: Any) -> None:
    """Both Debian roots, side by side (each is mostly waiting for the mirror)."""
    with ThreadPoolExecutor(max_workers=len(ROOTS)) as pool:
        for future in [pool.submit(build_root, client, tag) for tag in ROOTS]:
            future.result()


def build_postgres(client: Any) -> str:
    """The stand-in for postgres:16 (postgres/Dockerfile, postgres/entrypoint.sh)."""
    build_root(client, POSTGRES_ROOT)
    folder = HERE / "postgres"
    return build(client, POSTGRES_IMAGE, {"Dockerfile": folder / "Dockerfile",
                                          "entrypoint.sh": folder / "entrypoint.sh"},
                 {"ROOT": POSTGRES_ROOT})


def build_socket_proxy(client: Any) -> str:
    """The stand-in for the docker-socket-proxy (socket_proxy/proxy.py)."""
    build_root(client, PYTHON_ROOT)
    return build(client, SOCKET_PROXY_IMAGE, {"Dockerfile": PROXY_SCRIPT.parent / "Dockerfile",
                                              "proxy.py": PROXY_SCRIPT},
                 {"BASE": PYTHON_ROOT})


def build_discord(client: Any) -> str:
    """tests/support/discord.py (the Discord stand-in) as a service image."""
    build_root(client, PYTHON_ROOT)
    return build(client, DISCORD_IMAGE, {
        "Dockerfile": HERE / "discord" / "Dockerfile",
        "discord_server.py": ROOT / "tests" / "support" / "discord.py"},
        {"BASE": PYTHON_ROOT})


def build_stack_images(client: Any) -> dict[str, str]:
    """Everything a compose stack needs besides the aegis image, by role."""
    build_roots(client)
    return {"base": PYTHON_ROOT, "postgres": build_postgres(client),
            "socket-proxy": build_socket_proxy(client), "discord": build_discord(client),
            "busybox": build_busybox(client)}


def wheelhouse() -> Path:
    """Wheels of aegis and its dependencies, built on the host (containers here cannot
    reach a package index) once per pyproject.toml, under /tmp."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    folder = Path(f"/tmp/aegis-test-wheelhouse-{digest}")
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder),
             str(ROOT), "setuptools>=68", "wheel"],
            capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            raise ImageError(f"pip wheel failed: {result.stderr[-2000:]}")
        (folder / ".complete").touch()
    return folder


def aegis_context(dest: Path) -> Path:
    """The aegis image's build context in ``dest``: the files a checkout has for it, and
    the wheelhouse, so the Dockerfile builds without a package index."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in AEGIS_CONTEXT_FILES:
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in AEGIS_CONTEXT_PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    shutil.copytree(wheelhouse(), dest / "wheelhouse", ignore=shutil.ignore_patterns(
        ".complete", "aegis_ops-*"))
    return dest


@dataclass(frozen=True)
class Built:
    """An image built for one session, and every image id its build named: a multi-stage
    build leaves its first stage as an untagged image that removing the tag keeps."""

    tag: str
    image_ids: frozenset[str]


def build_aegis(client: Any, tag: str, context: Path) -> Built:
    """The repository's Dockerfile, from a context made by ``aegis_context``, on the local
    Python root; ``remove_build`` takes it off the engine again."""
    import docker.errors

    build_root(client, PYTHON_ROOT)
    try:
        _, log = client.images.build(path=str(context), tag=tag, rm=True, forcerm=True,
                                     buildargs={"BASE": PYTHON_ROOT})
    except docker.errors.BuildError as exc:
        raise ImageError(f"building {tag} failed: {exc}") from exc
    text = "".join(str(chunk.get("stream") or "") for chunk in log)
    return Built(tag, frozenset(_STEP_IMAGE.findall(text)))


def remove_build(client: Any, built: Built) -> None:
    """Remove the tag, then each image of the build that no tag and no other image uses
    (what another image or a container still uses stays)."""
    import docker.errors

    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(built.tag)
    for _ in range(2):  # a stage's parent is free once the stage is gone
        for image_id in built.image_ids:
            with contextlib.suppress(docker.errors.APIError):
                if not client.images.get(image_id).tags:
                    client.images.remove(image_id)
