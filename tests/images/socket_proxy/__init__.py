"""The socket proxy stand-in (proxy.py), importable for its unit test."""
