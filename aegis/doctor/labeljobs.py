"""The jobs containers declare in their labels: one line per label that declares no job
(the same reading as the daemon's, aegis/supervision/labeljobs/spec.py), how many do, and
a warning while AEGIS_LABEL_JOBS_RUN=on lets labels start containers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegis.core.config import Settings
from aegis.doctor.checks import FAIL, OK, WARN, Check
from aegis.supervision.docker import Sighting, docker_errors, forbidden
from aegis.supervision.labeljobs.spec import has_job_labels, read_labels

# A name no container can have: an exec asked of it is answered 404 where exec is allowed,
# 403 by a proxy that forbids it; nothing runs.
EXEC_PROBE = "_aegis-doctor-probe"
EXEC_HINT = ("label jobs run through the exec API: allow EXEC=1 and POST=1 on the socket "
             "proxy, or set AEGIS_LABEL_JOBS=false (docs/label-jobs.md)")

RUN_WARNING = ("AEGIS_LABEL_JOBS_RUN=on: an ofelia.job-run label starts a container of any "
               "image with any volume, so whoever can set a label on this host can mount it")


def exec_refused(client: Any, settings: Settings, listing: Sequence[dict[str, Any]]) -> bool:
    """Whether the endpoint answers an exec 403 Forbidden, asked only when some container
    declares a job (and label jobs are on)."""
    if not settings.label_jobs or not any(has_job_labels(entry.get("Labels") or {})
                                          for entry in listing):
        return False
    try:
        client.api.exec_create(EXEC_PROBE, ["true"])
    except docker_errors() as exc:  # 404 no such container: exec is allowed
        return forbidden(exc)
    return False


def label_job_checks(settings: Settings, seen: Sequence[Sighting],
                     no_exec: bool = False) -> list[Check]:
    if not settings.label_jobs:
        return []
    checks = []
    if no_exec:
        checks.append(Check("label_jobs_exec", FAIL, "containers declare jobs, and the "
                            "Docker endpoint forbids exec (403)", EXEC_HINT))
    if settings.label_jobs_run:
        checks.append(Check("label_jobs_run", WARN, RUN_WARNING,
                            "set AEGIS_LABEL_JOBS_RUN=off unless only trusted people can "
                            "set labels (docs/label-jobs.md#security)"))
    jobs, containers = 0, 0
    for sighting in sorted(seen, key=lambda s: s.name):
        if not has_job_labels(sighting.labels):
            continue
        declared = read_labels(sighting.name, sighting.labels,
                               run_allowed=settings.label_jobs_run)
        jobs += len(declared.specs)
        containers += 1 if declared.specs else 0
        checks.extend(Check("label_job", WARN, problem.describe(),
                            "fix the label and recreate the container "
                            "(docs/label-jobs.md)") for problem in declared.problems)
    if jobs:
        checks.append(Check("label_jobs", OK, f"{jobs} label job(s) declared by "
                            f"{containers} container(s)"))
    return checks
