"""Benchmarks behind `homestream bench`: one module each, results recorded in loadtest/RESULTS.md."""
