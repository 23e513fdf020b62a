"""A hypothesis state machine: random put/delete/roll/retention/reopen against a dict model."""

import shutil
import tempfile

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.keyspace import Keyspace
from engine.names import encode_user

USERS = [encode_user(bytes([i + 1]) * 32) for i in range(2)]
PATHS = ["/pub/a", "/pub/b", "/pub/d/x", "/pub/d/y", "/priv/z"]


class KeyspaceMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="hs-ks-")
        self.ks = Keyspace.open(self.dir, segment_bytes=4096, fsync="never")
        self.model: dict[tuple[str, str], bytes] = {}
        self.seq = 0
        self.first_seq = 1

    def teardown(self):
        self.ks.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(u=st.sampled_from(USERS), p=st.sampled_from(PATHS), v=st.binary(max_size=300))
    def put(self, u, p, v):
        rec, created = self.ks.put(u, p, v)
        assert created == ((u, p) not in self.model)
        assert rec.seq == self.seq + 1
        self.seq = rec.seq
        self.model[(u, p)] = v

    @rule(u=st.sampled_from(USERS), p=st.sampled_from(PATHS))
    def delete(self, u, p):
        rec = self.ks.delete(u, p)
        if (u, p) in self.model:
            assert rec is not None and rec.seq == self.seq + 1
            self.seq = rec.seq
            del self.model[(u, p)]
        else:
            assert rec is None

    @rule(n=st.integers(1, 3))
    def roll(self, n):
        # big values push the active segment over: forces segment rolls
        for i in range(n):
            u, p = USERS[0], f"/pub/big{i}"
            rec, _ = self.ks.put(u, p, b"R" * 3000)
            self.seq = rec.seq
            self.model[(u, p)] = b"R" * 3000

    @rule(max_bytes=st.sampled_from([1, 5000, 20000]))
    def retention(self, max_bytes):
        self.ks.apply_retention(max_bytes=max_bytes)
        assert self.ks.log.first_seq >= self.first_seq
        self.first_seq = self.ks.log.first_seq
        hist = [r.seq for r in self.ks.log.read_from(0, until=self.ks.log.last_seq)]
        assert hist == list(range(self.first_seq, self.seq + 1))

    @rule()
    def reopen(self):
        self.ks.close()
        self.ks = Keyspace.open(self.dir, segment_bytes=4096, fsync="never")
        assert self.ks.log.last_seq == self.seq
        assert self.ks.log.first_seq == self.first_seq

    @invariant()
    def matches_model(self):
        assert self.ks.count == len(self.model)
        for (u, p), v in self.model.items():
            e = self.ks.get(u, p)
            assert e is not None and self.ks.read_value(e) == v
        for u in USERS:
            expect = sorted((p for (uu, p) in self.model if uu == u), key=str.encode)
            assert self.ks.list(u, "/", limit=1000) == expect

    @precondition(lambda self: self.seq > 0)
    @invariant()
    def seq_is_last(self):
        assert self.ks.log.last_seq == self.seq


TestKeyspaceMachine = KeyspaceMachine.TestCase
TestKeyspaceMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
