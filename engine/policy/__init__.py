"""engine.policy: who may write and how much (SPEC 5.2): signups, quotas, rate limits, the client address.

Pure rules in small modules (ratelimit, clientaddr, quota, signups), the crash-safe user table (users), and the
one object the request path talks to (gate.Policy)."""

from .gate import Policy

__all__ = ["Policy"]
