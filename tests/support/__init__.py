"""What the tests share, in one place: a test module takes its helpers from here (and its
fixtures from a conftest.py, each a thin layer on these), never from another test module.
The benchmarks (bench/) use it too.

- ``waiting``: waiting for what a process, server or engine will do, with a bound
- ``rows``: reading (and seeding) the database with plain SQL: events, container rows
- ``seeds``: rows as aegis would have recorded them, for the pages' and digest's tests
- ``postgres``: the test PostgreSQL, its template and per-test databases, a server of a
  test's own; ``pgbouncer``: PgBouncer in front of it; ``replication``: a primary and
  its streaming standby of a test's own, for failovers
- ``cli``: the ``aegis`` command in a subprocess, its tables; ``daemons``: ``aegis run``
  daemons and their environments; ``releases``: a previous release of aegis from git
  history, in a virtualenv of its own
- ``containers``: test containers, their scripts and probes, and their states;
  ``engines``: private Docker engines and an engine's event stream; ``relay.py``: a byte
  relay into an engine's namespace; ``supervision``: aegis's supervisor and watcher in
  the test process, and a socket proxy the test controls
- ``discord``: the Discord-like server; ``outbox``: aegis's sender driven by a test
- ``scheduling``: jobs and schedulers driven in the test process; ``protocol``: the
  three-strike protocol as a table; ``clock``: a clock the test sets
- ``web``: the status page served from the test process; ``browser``: chromium
- ``stack``: a compose project of compose.yaml; ``compose``: the compose command
- ``bad_config``: the bad-configuration catalogue; ``ports``: free loopback ports;
  ``required``: skip, or fail under CI, for what this machine lacks
- ``hygiene`` and ``parallel``: pytest plugins (tests/conftest.py loads them) that check
  the run leaves the machine as found, and run the suite in parallel safely
"""
