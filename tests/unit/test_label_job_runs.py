"""The pure parts of running a label job: the output's kept tail, what is masked in it,
the processes a timeout signals, and the registry telling the scheduler of jobs added
and removed at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis.core.errors import UsageError
from aegis.scheduling import triggers
from aegis.scheduling.registry import Job, Registry
from aegis.supervision.labeljobs.execute import Tail, process_tree, secrets_of
from aegis.supervision.labeljobs.service import set_aside
from aegis.supervision.labeljobs.spec import read_labels


def test_the_tail_keeps_the_last_bytes_of_the_output() -> None:
    tail = Tail(limit_bytes=10)
    for chunk in (b"0123456", b"789abc", b"def"):
        tail.add(chunk)
    assert tail.text() == "6789abcdef"
    assert tail.cut


def test_the_tail_masks_secrets_and_credentials() -> None:
    tail = Tail()
    tail.add(b"connecting to postgres://app:hunter22@db/app with s3cr3t-token\n")
    text = tail.text(["s3cr3t-token"])
    assert "hunter22" not in text
    assert "s3cr3t-token" not in text
    assert "postgres://app:***@db/app" in text


def test_a_job_s_secret_looking_environment_is_masked() -> None:
    [spec] = read_labels("db", {"aegis.job.d.schedule": "@daily", "aegis.job.d.command": "x",
                                "aegis.job.d.env": '["PGPASSWORD=pw-1234", "MODE=fast"]'}
                         ).specs
    assert secrets_of(spec, ["aegis-secret"]) == ["aegis-secret", "pw-1234"]


def write_process(proc: Path, pid: int, ppid: int, cgroup: str) -> None:
    folder = proc / str(pid)
    folder.mkdir()
    (folder / "stat").write_text(f"{pid} (sh (x)) S {ppid} 1 1 0 -1\n")
    (folder / "cgroup").write_text(cgroup)


def test_a_timeout_signals_the_exec_and_its_children_in_the_container(tmp_path: Path) -> None:
    container = "c" * 64
    inside = f"0::/system.slice/docker-{container}.scope\n"
    write_process(tmp_path, 100, 1, inside)  # the exec's process
    write_process(tmp_path, 101, 100, inside)  # its child
    write_process(tmp_path, 102, 101, inside)  # and grandchild
    write_process(tmp_path, 200, 1, inside)  # the container's own, left alone
    write_process(tmp_path, 300, 1, "0::/user.slice\n")
    assert sorted(process_tree(100, container, tmp_path)) == [100, 101, 102]


def test_a_pid_of_another_container_or_namespace_is_never_signalled(tmp_path: Path) -> None:
    write_process(tmp_path, 100, 1, "0::/user.slice\n")
    assert process_tree(100, "c" * 64, tmp_path) == []
    assert process_tree(999, "c" * 64, tmp_path) == []  # not visible here


def test_the_registry_tells_its_listeners_of_jobs_added_and_removed() -> None:
    registry = Registry()
    heard: list[tuple[str, Job | None]] = []
    registry.add_listener(lambda job_id, job: heard.append((job_id, job)))
    job = registry.add("db.backup", lambda ctx: None, triggers.every(60), source="label: db",
                       overlap=True)
    registry.remove("db.backup")
    assert heard == [("db.backup", job), ("db.backup", None)]
    assert (job.source, job.overlap) == ("label: db", True)


def test_only_a_job_with_a_source_may_have_a_dotted_id() -> None:
    with pytest.raises(UsageError, match="snake_case"):
        Registry().add("db.backup", lambda ctx: None, triggers.every(60))
    with pytest.raises(UsageError, match="letters, digits"):
        Registry().add("db/backup", lambda ctx: None, triggers.every(60), source="label: db")


@pytest.mark.parametrize(("name", "aside"), [
    ("0123456789ab_shop-db-1", True),  # compose, recreating shop-db-1
    ("shop-db-1-aegis-replaced-0123456789ab", True),  # aegis's own recreate
    ("shop-db-1", False), ("0123456789ab", False), ("backup_db", False),
])
def test_a_container_set_aside_for_a_recreate_declares_no_job(name: str, aside: bool) -> None:
    assert set_aside(name) is aside
