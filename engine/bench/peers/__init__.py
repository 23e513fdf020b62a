"""Peer servers the benchmarks compare homestream with, each runnable as `python -m engine.bench.peers.<name>`."""
