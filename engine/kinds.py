"""The two kinds of write, event and log record, with their SPEC names (`event: PUT` / `event: DEL`).

The lowest layer: the log's record format (engine/log/record.py) stores these numbers, the SSE encoders
(engine/http/sse.py) print these names, and neither has to import the other for them.
"""

PUT = 1
DEL = 2
KINDS = (PUT, DEL)
KIND_NAMES = {PUT: "PUT", DEL: "DEL"}
