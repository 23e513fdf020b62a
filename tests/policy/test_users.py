"""The crash-safe user table (engine/policy/users.py): durable changes, single-use tokens, torn tails."""

import os

from engine.policy.users import FILE_NAME, UserTable, token_digest

U1 = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
U2 = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1y"


def test_nothing_is_written_until_something_changes(tmp_path):
    UserTable.open(tmp_path)
    assert not (tmp_path / FILE_NAME).exists()


def test_changes_survive_a_reopen(tmp_path):
    t = UserTable.open(tmp_path)
    token = t.issue_token()
    unused = t.issue_token()
    assert t.use_token(token, U1)
    t.set_disabled(U2, True)
    t2 = UserTable.open(tmp_path)
    assert t2.signed_up == {U1} and t2.disabled == {U2} and t2.tokens == {token_digest(unused)}


def test_a_token_is_single_use_and_revocable(tmp_path):
    t = UserTable.open(tmp_path)
    token = t.issue_token()
    assert t.use_token(token, U1)
    assert not t.use_token(token, U2)  # used
    assert not UserTable.open(tmp_path).use_token(token, U2)  # still used after a restart
    other = t.issue_token()
    assert t.revoke_token(other)
    assert not t.use_token(other, U2)  # revoked
    assert not t.use_token("never-issued", U2)
    assert U2 not in t.signed_up


def test_tokens_are_kept_only_as_digests(tmp_path):
    t = UserTable.open(tmp_path)
    token = t.issue_token()
    assert token.encode() not in (tmp_path / FILE_NAME).read_bytes()


def test_a_torn_last_line_is_cut_and_the_rest_kept(tmp_path):
    t = UserTable.open(tmp_path)
    t.sign_up(U1)
    t.set_disabled(U1, True)
    path = tmp_path / FILE_NAME
    whole = path.read_bytes()
    path.write_bytes(whole[:-5])  # the last append torn by a crash
    t2 = UserTable.open(tmp_path)
    assert t2.signed_up == {U1} and t2.disabled == set() and t2.dropped_bytes > 0
    assert path.read_bytes() == whole[:whole.index(b"\n") + 1]
    t2.set_disabled(U1, True)  # appends after the cut, not after garbage
    assert UserTable.open(tmp_path).disabled == {U1}


def test_a_corrupt_line_ends_the_replay(tmp_path):
    t = UserTable.open(tmp_path)
    t.sign_up(U1)
    t.sign_up(U2)
    path = tmp_path / FILE_NAME
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    assert UserTable.open(tmp_path).signed_up == {U1}


def test_a_long_journal_is_compacted_atomically_at_open(tmp_path):
    t = UserTable.open(tmp_path)
    for _ in range(100):
        t.set_disabled(U1, True)
        t.set_disabled(U1, False)
    t.sign_up(U2)
    assert t.lines == 201
    t2 = UserTable.open(tmp_path)
    assert t2.lines == 1 and t2.signed_up == {U2} and t2.disabled == set()
    assert not os.path.exists(tmp_path / (FILE_NAME + ".tmp"))
    assert UserTable.open(tmp_path).signed_up == {U2}


def test_two_processes_share_one_table_and_a_token_is_spent_once(tmp_path):
    a = UserTable.open(tmp_path)  # two workers serving one data directory
    b = UserTable.open(tmp_path)
    token = a.issue_token()
    assert b.use_token(token, U1)  # b catches up under the lock before deciding
    assert not a.use_token(token, U2)  # and a sees it spent
    assert a.signed_up == {U1} and U2 not in a.signed_up
    b.set_disabled(U2, True)
    assert U2 not in a.disabled  # not yet read ...
    a.refresh()
    assert U2 in a.disabled  # ... until a catches up (at most a second later in a serving process)


def test_a_compaction_by_another_process_is_replayed_whole(tmp_path):
    a = UserTable.open(tmp_path)
    for _ in range(50):
        a.set_disabled(U1, True)
        a.set_disabled(U1, False)
    a.sign_up(U2)
    c = UserTable.open(tmp_path)  # compacts at open: renames a new file over the journal
    assert c.lines == 1
    a.refresh()
    assert a.signed_up == {U2} and a.disabled == set() and a.lines == 1
    c.set_disabled(U1, True)
    a.refresh()
    assert a.disabled == {U1}
