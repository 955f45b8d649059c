"""Exceptions aegis raises. Everything psycopg or docker raises is wrapped into one of these."""


class AegisError(Exception):
    """Base class for errors aegis reports to the operator."""


class ConfigError(AegisError):
    """Bad configuration: the message names the variable or key. Exit code 2."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class UsageError(AegisError):
    """A bad argument given to a command or an API call. Exit code 2."""


class StoreError(AegisError):
    """A database operation failed for a reason other than the database being unreachable.
    ``sqlstate`` is PostgreSQL's error code when the server gave one."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseUnavailable(StoreError):
    """The database could not be reached."""


class SchemaTooNew(AegisError):
    """The database's schema holds migrations of a newer aegis that declare this one too
    old to run on it: the message names both versions and what to do. Exit code 4."""
