"""The reason a task failed with its run names the run, its status and what went wrong."""

import pytest

from aegis.scheduling.tasks import task_error


@pytest.mark.parametrize(("status", "error", "expected"), [
    ("failed", "ValueError: invalid literal for int() with base 10: 'x'",
     "run 7 failed: ValueError: invalid literal for int() with base 10: 'x'"),
    ("timeout", "timeout: still running after 60s", "run 7 timeout: still running after 60s"),
    ("interrupted", "interrupted: the daemon stopped before it finished",
     "run 7 interrupted: the daemon stopped before it finished"),
    ("missed", None, "run 7 missed"),
    ("failed", "", "run 7 failed"),
])
def test_task_error(status: str, error: str | None, expected: str) -> None:
    assert task_error(7, status, error) == expected
