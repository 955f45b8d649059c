"""aegis: an ops daemon for Docker hosts."""

__version__ = "0.1.0"
