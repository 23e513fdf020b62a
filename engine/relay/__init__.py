"""engine.relay: `homestream relay` (SPEC 5.4), following many homeservers and serving one merged stream.

upstreams.py (configuration) -> homestream.py / pubky.py (followers, over follower.py) -> record.py (one log
record per upstream event, and its frame) -> cursors.py (cursors recovered from the log) -> hub.py, routes.py,
service.py -> app.py (the assembly handed to engine/server.py).
"""
