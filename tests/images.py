"""The one test image: FROM scratch with Debian's static busybox, so tests and benchmarks
need no registry. Built on demand by the test fixtures, the private-engine fault tests and
the benchmarks."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
TEST_IMAGE = "aegis-test-busybox:latest"
DOCKERFILE = (b"FROM scratch\nCOPY busybox /bin/busybox\n"
              b'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n')


def build_busybox(client: Any) -> str:
    """Build (or rebuild: a cached build is instant) the busybox image on ``client``'s
    engine and return its tag. Raises FileNotFoundError without busybox-static."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
        tar.add(str(BUSYBOX), arcname="busybox")
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=TEST_IMAGE, rm=True)
    return TEST_IMAGE
