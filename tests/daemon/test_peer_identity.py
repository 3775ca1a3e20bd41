"""Who is asking is the kernel's answer (SO_PEERCRED), whatever the client writes."""

from __future__ import annotations

import json

import pytest
from svtd_helpers import HELLO, call_as, client_snippet, frame, raw_connect, read_frame

pytestmark = pytest.mark.integration


def test_peer_is_identified_by_kernel_uid(fake_daemon, test_users, readable_src, as_user):
    alice = test_users["svt-alice"]
    reply = call_as(as_user, alice, readable_src, fake_daemon.socket, "whoami")
    assert reply["status"] == 0
    assert reply["data"]["user"] == "svt-alice"
    assert reply["data"]["uid"] == alice.pw_uid
    assert reply["data"]["via"] == "svirtd"
    bob = test_users["svt-bob"]
    reply = call_as(as_user, bob, readable_src, fake_daemon.socket, "whoami")
    assert (reply["data"]["user"], reply["data"]["uid"]) == ("svt-bob", bob.pw_uid)


def test_identity_claims_in_the_arguments_are_just_data(
    fake_daemon, test_users, readable_src, as_user
):
    alice = test_users["svt-alice"]
    spoof = {"uid": 0, "user": "root", "SUDO_UID": "0", "as_user": "root"}
    reply = call_as(as_user, alice, readable_src, fake_daemon.socket, "whoami", spoof)
    assert reply["data"]["user"] == "svt-alice"
    assert reply["data"]["uid"] == alice.pw_uid
    # and policy decisions use the kernel's answer: bob's right is not alice's
    reply = call_as(
        as_user, test_users["svt-carol"], readable_src, fake_daemon.socket, "start", spoof
    )
    assert reply["status"] == 3
    assert "svt-carol" in reply["message"]


def _raw_as(as_user, user, src, sock, frames: list) -> list:
    """Send raw frames as a real uid; returns every frame the daemon answered with."""
    body = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({sock!r})\n"
        f"for f in {frames!r}:\n"
        "    b = json.dumps(f).encode(); s.sendall(len(b).to_bytes(4, 'big') + b)\n"
        "out = []\n"
        "s.settimeout(10)\n"
        "while True:\n"
        "    h = s.recv(4)\n"
        "    if len(h) < 4: break\n"
        "    n = int.from_bytes(h, 'big'); d = b''\n"
        "    while len(d) < n: d += s.recv(n - len(d))\n"
        "    out.append(json.loads(d))\n"
        "    if out[-1]['type'] in ('reply', 'error') and len(out) >= 2: break\n"
        "print(json.dumps(out))\n"
    )
    res = as_user(user, client_snippet(src, body))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "request", "request": {"command": "whoami", "args": {}, "uid": 0}},
        {"type": "request", "request": {"command": "whoami"}, "uid": 0},
        {"type": "request", "request": {"command": "whoami"}, "user": "root"},
    ],
)
def test_uid_fields_in_the_frame_are_refused(fake_daemon, test_users, readable_src, as_user, bad):
    alice = test_users["svt-alice"]
    out = _raw_as(as_user, alice, readable_src, fake_daemon.socket, [HELLO, bad])
    assert out[0]["type"] == "hello"
    assert out[0]["user"] == "svt-alice"  # the daemon says whom it sees
    assert out[-1]["type"] == "error"
    assert out[-1]["code"] == "bad-frame"
    assert "identity comes from the kernel" in out[-1]["message"]


def test_as_user_from_non_root_is_refused(fake_daemon, test_users, readable_src, as_user):
    alice = test_users["svt-alice"]
    reply = call_as(as_user, alice, readable_src, fake_daemon.socket, "whoami", as_user="root")
    # the daemon passes the wish on, marked refused, so the gate can deny *and audit* it
    assert reply["data"]["user"] == "svt-alice"
    assert reply["data"]["requested_as"] == "root"
    assert reply["data"]["as_refused"] is True
    assert reply["data"]["acting_as"] is None
    reply = call_as(as_user, alice, readable_src, fake_daemon.socket, "start", as_user="svt-bob")
    assert reply["status"] == 3
    assert reply["check"] == "identity"


def test_as_user_from_root_is_honoured(fake_daemon, test_users, readable_src, as_user):
    reply = call_as(as_user, None, readable_src, fake_daemon.socket, "start", as_user="svt-bob")
    assert reply == {
        "status": 0,
        "data": {"op": "start", "user": "svt-bob"},
        "message": "",
        "check": None,
    }
    reply = call_as(as_user, None, readable_src, fake_daemon.socket, "whoami", as_user="nobody-x")
    assert reply["status"] == 3
    assert "no such user" in reply["message"]


def test_uid_without_passwd_entry_is_refused(fake_daemon, readable_src, as_user):
    import pwd

    ghost_uid = 54321
    with pytest.raises(KeyError):
        pwd.getpwuid(ghost_uid)
    ghost = pwd.struct_passwd(("ghost", "x", ghost_uid, ghost_uid, "", "/", "/bin/false"))
    reply = call_as(as_user, ghost, readable_src, fake_daemon.socket, "whoami")
    assert reply["error"] == "identity"
    assert f"uid {ghost_uid} has no passwd entry" in reply["message"]
    # and the daemon is still there for everyone else
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame({"type": "request", "request": {"command": "whoami"}}))
    assert read_frame(s)["type"] == "hello"
    assert read_frame(s)["reply"]["data"]["user"] == "root"
