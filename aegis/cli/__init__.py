"""The ``aegis`` command: one module per command group (the daemon, jobs, history,
containers, notify, the database, doctor, hosts), gathered by ``main.py``; ``common.py``
holds the exit codes, the settings and the app they share."""
