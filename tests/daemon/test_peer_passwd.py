"""svirtd reuses a peer's passwd entry for a couple of seconds (access.identity._peer_passwd):
one NSS lookup per uid, not per connection, while the uid still comes from the kernel on every
connection and a uid without an entry is refused every time."""

from __future__ import annotations

import os
import pwd
import socket

import pytest

from secured_virt.access import identity


@pytest.fixture(autouse=True)
def fresh_cache():
    identity._peer_pw.clear()
    yield
    identity._peer_pw.clear()


def test_consecutive_connections_of_one_uid_look_it_up_once(monkeypatch):
    calls = []
    real = pwd.getpwuid
    monkeypatch.setattr(identity.pwd, "getpwuid", lambda uid: (calls.append(uid), real(uid))[1])
    for _ in range(5):
        a, b = socket.socketpair()
        ident = identity.identify_peer(a)
        a.close(), b.close()
        assert ident.uid == os.getuid() and ident.user == real(os.getuid()).pw_name
    assert calls == [os.getuid()]


def test_the_entry_is_looked_up_again_after_the_ttl(monkeypatch):
    calls = []
    real = pwd.getpwuid
    monkeypatch.setattr(identity.pwd, "getpwuid", lambda uid: (calls.append(uid), real(uid))[1])
    monkeypatch.setattr(identity, "PEER_PASSWD_TTL", 0.0)
    for _ in range(3):
        a, b = socket.socketpair()
        identity.identify_peer(a)
        a.close(), b.close()
    assert len(calls) == 3


def test_a_uid_without_an_entry_is_refused_every_time(monkeypatch):
    def missing(uid):
        raise KeyError(uid)

    monkeypatch.setattr(identity.pwd, "getpwuid", missing)
    for _ in range(2):
        a, b = socket.socketpair()
        with pytest.raises(identity.IdentityError, match="has no passwd entry"):
            identity.identify_peer(a)
        a.close(), b.close()
    assert identity._peer_pw == {}
