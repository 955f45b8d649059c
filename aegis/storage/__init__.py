"""Storage: everything that knows PostgreSQL or the spool file. The connector and its pool
(``db.py``, the one module importing psycopg, with ``listener.py`` for wake-ups), the named
queries (``queries.py`` and ``sql/``), which releases may run on the schema its migrations
built (``schema.py``), rows as dataclasses (``rows.py``), the episodic
history and key/value state (``events.py``, ``store.py``), the outbox a notification is
queued in with its event (``outbox.py``), the spool that stands in while the database is
down (``spool.py``) and the database's outage kept in it (``dboutage.py``), the embedded
server (``embedded.py``) and the narrow handle every layer above is given
(``runtime.py``). The tables of scheduling and supervision are owned by those packages'
repositories."""
