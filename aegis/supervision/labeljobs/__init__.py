"""Label jobs: commands that containers declare in their own labels (``aegis.job.*``, and
Ofelia's ``ofelia.job-exec.*`` verbatim), run in them on a schedule, exactly once per slot.

``spec.py`` reads a container's labels into job specs and the problems of the labels it
cannot use (pure); ``execute.py`` runs one spec through the engine's exec API (or, with
AEGIS_LABEL_JOBS_RUN=on, a new container for ``ofelia.job-run.*``) and stops it at its
timeout; ``alerts.py`` is a failing job's living message; ``service.py`` finds the specs
(the event stream, and a sweep as a safety net) and registers and unregisters them as jobs
of the running scheduler.
"""
