"""Cluster: the log replicated through NATS JetStream (docs/CLUSTER.md)."""
