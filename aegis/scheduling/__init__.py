"""Scheduling: recurring jobs run exactly once across the daemons sharing one PostgreSQL.

What runs and when: ``registry`` (jobs and services, added by job modules), ``triggers``
(pure functions of a UTC instant) and ``job_settings`` (a job's ``[jobs.ID]`` settings).
The daemon that runs it: ``daemon`` (the loop, the pid file, the host's lease),
``scheduler`` (due slots, the misfire plans, claims), ``runs`` (runs on worker threads)
and ``tasks`` (queued one-off runs). What watches it: ``heartbeat`` (the one rule of a
daemon's liveness) and ``deadlines`` (silent jobs). ``control`` is the Python API's handle
on all of it. Two modules own tables: ``repository`` (``jobs``, ``job_runs``, ``daemons``,
``host_leases``) and ``tasks`` (``tasks``); both hand back frozen dataclasses.
"""
