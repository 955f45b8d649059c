"""The named queries, one file per owner module (its first line names it), and the
numbered migrations (``migrations/``)."""
