"""engine.keyspace: the key index over the log (see index.py)."""

from .index import DEFAULT_CONTENT_TYPE, Entry, Keyspace

__all__ = ["Keyspace", "Entry", "DEFAULT_CONTENT_TYPE"]
