"""The schema, as numbered migration files applied in order (``Database.migrate``)."""
