"""homestream: an event-streaming homeserver for signed personal data stores."""

__version__ = "0.1.0"
