"""What the layers above storage are handed instead of the whole application.

A job, a service, the scheduler, the supervisor and the sender need the settings, the
database and the event store, nothing else. ``Runtime`` says so; the ``Aegis`` object
(aegis/api.py) satisfies it without anything below it importing it.
"""

from __future__ import annotations

from typing import Protocol

from aegis.core.config import Settings
from aegis.storage.db import Database
from aegis.storage.store import Store


class Runtime(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def store(self) -> Store: ...
