"""daemon.websessions: a session's account (uid, groups) is looked up at login and then kept
for the group-role cache's few seconds, not asked of NSS on every request (it was a fifth of
svirtd's time per Xen-API call); after that time it is looked up again, so a membership change
or a replaced account is still seen.  In-process, on a real account and a real audit log; the
service behind is a stand-in that records who asked (what is under test is the identity
svirtd hands it)."""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import pytest

from secured_virt.access.audit import AuditLog
from secured_virt.access.tokens import ACCOUNT_SECONDS, TokenStore
from secured_virt.config import default_config
from secured_virt.daemon import protocol as P
from secured_virt.daemon import websessions as W
from secured_virt.requests import EXIT_OK, Reply


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Recorder:
    """The service's side of a session request: who it ran as."""

    def __init__(self, config, audit):
        self.config, self.audit, self.seen = config, audit, []

    def handle(self, ident, request, interaction):
        self.seen.append(ident)
        return Reply(EXIT_OK, data={})


@pytest.fixture
def sessions(tmp_path, test_users, monkeypatch):
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o700)
    front = test_users["svt-carol"]  # stands for the front-end's uid
    cfg = dataclasses.replace(default_config(), frontends=(("xenapi", "svt-carol"),))
    svc = Recorder(cfg, AuditLog(str(logdir / "audit.log"), use_syslog=False))
    turns = []  # whose turn each request waited for in svirtd's admission queue

    def run_service(fn, retry_safe=None, who=None):
        turns.append(who)
        return fn()

    ws = W.WebSessions(svc, SimpleNamespace(run_service=run_service))
    clock = Clock()
    ws.store = TokenStore(idle_seconds=600, max_seconds=3600, max_per_user=10, max_total=10,
                          clock=clock)  # fmt: skip
    lookups = []
    real = os.getgrouplist

    def counted(user, gid):
        lookups.append(user)
        return real(user, gid)

    monkeypatch.setattr(W.os, "getgrouplist", counted)
    conn = SimpleNamespace(uid=front.pw_uid, pid=os.getpid(), identity=None, who="test")
    return SimpleNamespace(ws=ws, svc=svc, clock=clock, lookups=lookups, conn=conn, turns=turns)


def request(s, token):
    msg = {"type": P.SESSION_REQUEST, "token": token, "peer": "127.0.0.1:4000",
           "request": {"command": "list", "args": {}}}  # fmt: skip
    return s.ws.handle(s.conn, msg)[1]


def test_the_account_is_looked_up_once_per_few_seconds_not_per_request(sessions, test_users):
    s = sessions
    alice = test_users["svt-alice"]
    groups = set(os.getgrouplist("svt-alice", alice.pw_gid))
    s.lookups.clear()  # (that one was ours)
    token, _ = s.ws.store.issue("svt-alice", alice.pw_uid, "xenapi", None)
    for _ in range(5):
        assert request(s, token).status == EXIT_OK
    assert s.lookups == ["svt-alice"]  # the first request looked it up; the others reused it
    ident = s.svc.seen[-1]
    assert (ident.uid, ident.gid, ident.user) == (alice.pw_uid, alice.pw_gid, "svt-alice")
    assert set(ident.groups) == groups
    assert ident.via == "xenapi" and ident.peer == "127.0.0.1:4000"
    # in svirtd's admission queue it is alice who waits her turn, not the front-end's uid
    assert s.turns == [alice.pw_uid] * 5
    s.clock.t += ACCOUNT_SECONDS  # as old as a group-role answer may get: asked again
    assert request(s, token).status == EXIT_OK
    assert s.lookups == ["svt-alice", "svt-alice"]


def test_a_replaced_account_ends_the_session_when_looked_up_again(sessions, test_users):
    s = sessions
    alice = test_users["svt-alice"]
    # the token was issued for another uid under that name (the account was replaced since)
    token, _ = s.ws.store.issue("svt-alice", alice.pw_uid + 12345, "xenapi", None)
    reply = request(s, token)
    assert reply.status != EXIT_OK and reply.check == "session"
    assert request(s, token).check == "session" and not s.svc.seen  # dropped for good
