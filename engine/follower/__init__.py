"""Followers: processes that apply a log's records, in seq order, to their own key index and hub.

`Follower` (follower.py) is the part every follower shares: a worker over the shared segments, and later a
cluster replica or a relay. `SegmentFeed` (segments.py) feeds a Follower from segments another process writes.
"""

from .follower import Follower
from .segments import SegmentFeed

__all__ = ["Follower", "SegmentFeed"]
