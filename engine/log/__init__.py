"""engine.log: the segment log (record.py framing, segment.py files, index.py sparse index, store.py Log)."""

from .record import DEL, PUT, Record, decode_records
from .store import Log, LogStats

__all__ = ["Log", "LogStats", "Record", "PUT", "DEL", "decode_records"]
