"""Fixtures for tests/sync: a hard time limit per test (servers and signing users come from tests/conftest.py)."""

from client.guard import hard_timeout, register  # noqa: F401  (autouse fixture)


def pytest_configure(config):
    register(config)


