"""label_jobs: the jobs containers declare in their labels (``aegis.job.*``, Ofelia's
``ofelia.job-exec.*``), registered and unregistered while the daemon runs, as their
containers come and go (docs/label-jobs.md). The ``label_jobs`` service finds them; each
becomes a job of its own, ``CONTAINER.NAME``."""

from aegis.scheduling.registry import Registry
from aegis.supervision.labeljobs.service import LabelJobs


def register(registry: Registry) -> None:
    labels = LabelJobs(registry)
    registry.add_service("label_jobs", labels.watch)
