"""access.tokens: idle and absolute expiry, per-user and total caps, front-end binding, and
the login throttle, on a controlled clock (the rest is exercised through the real svirtd)."""

from __future__ import annotations

import pytest

from secured_virt.access.tokens import LoginThrottle, TokenStore, public_id


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def store(clock, **kw):
    args = {"idle_seconds": 60, "max_seconds": 300, "max_per_user": 3, "max_total": 5}
    args.update(kw)
    return TokenStore(clock=clock, **args)


def test_tokens_are_random_and_bound_to_their_frontend():
    c = Clock()
    s = store(c)
    t1, r1 = s.issue("alice", 1001, "xenapi", "127.0.0.1:5")
    t2, _ = s.issue("alice", 1001, "xenapi", None)
    assert t1 != t2 and len(t1) == 43 and r1.sid == public_id(t1) and r1.sid not in t1
    assert s.use(t1, "xenapi")[0] is r1
    rec, why = s.use(t1, "web")
    assert rec is None and "'xenapi' front-end" in why
    assert s.use("A" * 43, "xenapi")[0] is None
    assert s.use(t1 + "x", "xenapi")[1] == "not a session token"


def test_idle_and_absolute_expiry():
    c = Clock()
    s = store(c)
    tok, _ = s.issue("alice", 1001, "web", None)
    for _ in range(4):  # used every 50 s: the idle clock restarts each time
        c.t += 50
        assert s.use(tok, "web")[0] is not None
    c.t += 50  # 250 s after login, 50 s idle
    assert s.use(tok, "web")[0] is not None
    c.t += 55  # 305 s after login: absolute expiry, however active
    rec, why = s.use(tok, "web")
    assert rec is None and "older than 5 minutes" in why
    assert s.use(tok, "web")[1].startswith("unknown session")  # gone for good
    tok, _ = s.issue("alice", 1001, "web", None)
    c.t += 60
    assert "unused for 1 minutes" in s.use(tok, "web")[1]


def test_logout_invalidates_at_once_and_caps_hold():
    c = Clock()
    s = store(c)
    toks = [s.issue("alice", 1001, "xenapi", None)[0] for _ in range(4)]
    assert s.use(toks[0], "xenapi")[0] is None  # the 4th login ended the least recently used
    assert all(s.use(t, "xenapi")[0] for t in toks[1:])
    assert s.drop(toks[1], "xenapi") is not None
    assert s.use(toks[1], "xenapi")[0] is None and s.drop(toks[1], "xenapi") is None
    s.issue("bob", 1002, "xenapi", None)
    s.issue("bob", 1002, "xenapi", None)
    s.issue("carol", 1003, "xenapi", None)
    with pytest.raises(OverflowError, match="session_max_total"):
        s.issue("dave", 1004, "xenapi", None)
    c.t += 61  # all idle: the next login sweeps them
    s.issue("dave", 1004, "xenapi", None)
    assert len(s) == 1


def test_throttle_per_user_and_per_address():
    c = Clock()
    th = LoginThrottle(per_user=3, per_address=5, window_seconds=60, clock=c)
    for _ in range(3):
        assert th.refusal("bob", "10.0.0.1:1234") is None
        th.failed("bob", "10.0.0.1:1234")
    why, retry = th.refusal("bob", "10.0.0.9:1")
    assert "user 'bob'" in why and 0 < retry <= 60
    assert th.refusal("alice", "10.0.0.1:999") is None  # another port, same host: 3 of 5
    th.failed("alice", "10.0.0.1:1")
    th.failed("carol", "[::1]:7")
    th.failed("eve", "10.0.0.1:2")
    assert "address 10.0.0.1" in th.refusal("zed", "10.0.0.1:3")[0]
    assert th.refusal("zed", "[::1]:8") is None
    c.t += 61
    assert th.refusal("bob", "10.0.0.1:1") is None
    th.failed("bob", None)
    th.succeeded("bob")
    assert th.refusal("bob", None) is None


def test_a_sessions_account_is_kept_for_the_group_roles_time():
    from rbac.groups import DEFAULT_TTL
    from secured_virt.access.tokens import ACCOUNT_SECONDS, Account

    assert ACCOUNT_SECONDS == DEFAULT_TTL  # a membership change shows as soon as for svirsh
    c = Clock()
    s = store(c)
    _, rec = s.issue("alice", 1001, "xenapi", None)
    assert s.account(rec) is None  # nothing looked up yet
    acct = Account(uid=1001, gid=1001, user="alice", groups=(1001, 2000))
    s.keep_account(rec, acct)
    c.t += ACCOUNT_SECONDS - 0.1
    assert s.account(rec) is acct
    c.t += 0.1  # that old: NSS is asked again
    assert s.account(rec) is None
