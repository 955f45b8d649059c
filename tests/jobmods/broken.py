"""A job module whose import fails, for the start-up refusal test."""

raise RuntimeError("this module is broken on purpose")
