"""A previous release of aegis, from git history, installed into a virtualenv of its own
without downloading anything: its source from ``git archive`` of its tag, its
dependencies those of the suite's own environment (a ``.pth`` file names that
environment's site-packages after the release's source), so ``python -m aegis`` there runs
the old code beside the current one (the rolling-upgrade test)."""

from __future__ import annotations

import io
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.cli import REPO


@dataclass(frozen=True)
class Release:
    """An installed release: ``python`` runs it (``python -m aegis ...`` with ``source`` as
    the working directory and PYTHONPATH, so its own tests/jobmods are the job modules)."""

    tag: str
    source: Path
    python: Path

    def version(self) -> str:
        """``aegis --version``'s number, as the release itself says it."""
        result = subprocess.run([str(self.python), "-m", "aegis", "--version"],
                                cwd=self.source, env={"PYTHONPATH": str(self.source)},
                                capture_output=True, text=True, timeout=60, check=True)
        return result.stdout.strip().rsplit(" ", 1)[-1]


# each release's commit, for a clone made without its tags
RELEASE_COMMITS = {"v0.1.0": "dcac1f88749d07d7670a0d7b4544789c58fc7fcc"}


def _known(ref: str) -> bool:
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
                            f"{ref}^{{commit}}"], capture_output=True, check=False,
                           timeout=60)
    return found.returncode == 0


def install_release(tag: str, folder: Path) -> Release:
    """The release ``tag`` of this repository, unpacked and installed under ``folder``."""
    ref = tag if _known(tag) else RELEASE_COMMITS.get(tag, tag)
    if not _known(ref):
        raise RuntimeError(f"neither the tag {tag} nor its commit is in {REPO}: fetch the "
                           "history and tags (git fetch --tags --unshallow)")
    source = folder / "source"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref],
                             capture_output=True, check=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    # jobs/ is installed as the package aegis_jobs (pyproject.toml's package-dir)
    (source / "aegis_jobs").symlink_to("jobs", target_is_directory=True)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    # the release's source first; then the suite's dependencies, as plain paths: the .pth
    # files there (the current checkout's editable install) are not run
    (Path(purelib) / "aegis-release.pth").write_text(
        f"{source}\n{sysconfig.get_paths()['purelib']}\n", encoding="utf-8")
    return Release(tag=tag, source=source, python=python)
