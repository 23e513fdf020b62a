from client.guard import hard_timeout, register  # noqa: F401  (autouse fixture)


def pytest_configure(config):
    register(config)
