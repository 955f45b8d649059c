"""The rules of supervision, as pure functions of what Docker reports and ``now``: what a
container's labels ask for (labels.py), when a recurring maintenance window covers it
(windows.py), why it is in trouble (triage.py), and what to do about it, strike by strike
(strikes.py). No I/O, no clock: the supervisor hands them what
it observed and acts on their answer."""
