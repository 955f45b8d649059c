"""The version of aegis, in a module of its own: nothing imports the package face for it."""

__version__ = "0.2.0"
