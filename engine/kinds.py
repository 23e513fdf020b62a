"""The kinds of write, event and log record, with their SPEC names (`event: PUT` / `event: DEL`), and the
relay's GAP (a range of another log it could not copy; version 2 records only, see engine/log/record.py).

The lowest layer: the log's record format (engine/log/record.py) stores these numbers, the SSE encoders
(engine/http/sse.py) print these names, and neither has to import the other for them.
"""

PUT = 1
DEL = 2
GAP = 3
KINDS = (PUT, DEL)
KINDS_V2 = (PUT, DEL, GAP)
KIND_NAMES = {PUT: "PUT", DEL: "DEL", GAP: "GAP"}
