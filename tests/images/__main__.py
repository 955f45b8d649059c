"""Build the test images on the engine at DOCKER_HOST, as the suite does, and print how to
run compose.yaml on them by hand (see DEVELOPERS.md):

    .venv/bin/python -m tests.images                # the cached images
    .venv/bin/python -m tests.images --context DIR  # and an aegis build context in DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.images import (
    DISCORD_IMAGE,
    POSTGRES_IMAGE,
    PYTHON_ROOT,
    SOCKET_PROXY_IMAGE,
    ImageError,
    aegis_context,
    build_stack_images,
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=Path, metavar="DIR",
                        help="also copy the aegis image's build context, with a wheelhouse, "
                             "into DIR (put compose.yaml and .env there to run the stack)")
    args = parser.parse_args()
    import docker

    client = docker.from_env(timeout=600)
    started = time.monotonic()
    try:
        images = build_stack_images(client)
        if args.context:
            aegis_context(args.context)
    except ImageError as exc:
        print(f"tests.images: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    for role, tag in images.items():
        print(f"{role:<13} {tag}")
    print(f"built in {time.monotonic() - started:.0f}s; in .env for compose.yaml:\n"
          f"  AEGIS_BASE_IMAGE={PYTHON_ROOT}\n  POSTGRES_IMAGE={POSTGRES_IMAGE}\n"
          f"  SOCKET_PROXY_IMAGE={SOCKET_PROXY_IMAGE}\n"
          f"  (a Discord-like webhook endpoint: {DISCORD_IMAGE}, port 8080)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
