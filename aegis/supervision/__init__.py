"""Supervision: containers watched and healed with the three-strike protocol.

One container at a time, ``supervisor.py`` observes (``observe.py``: what Docker reports,
read for the protocol), decides (``protocol/``: labels, triage and strikes, pure
functions), persists (``persist.py``: the decision saved with its events before anything
is done) and acts (``restarter.py``: strike 2's restart, its dependants, outcomes a killed
daemon left; ``ladder.py``: the rungs above a restart, ``recreate.py`` making a recreate
through the API). ``rewire.py`` recreates the dependants of a replaced network parent.
Around it: ``docker.py`` (the engine adapter), ``repository.py`` (the
``containers`` table), ``incidents.py`` and ``records.py`` (an incident's log, events and
living message), ``storms.py`` (many incidents of one host, one message: the ``storms``
table), ``outage.py`` (the engine unreachable: its message), ``watcher.py`` (the event
stream and what each event means), ``checks.py`` (containers judged off the watcher's
loop), ``maintenance.py`` (the recurring maintenance windows under way: what each held
back, the event at its end), ``service.py`` (the daemon's
service and sweep job) and ``containers.py`` (what operators see and do: ``aegis
containers``, ``ack``, ``maintenance``). ``labeljobs/`` runs the jobs containers declare in
their labels.
"""
