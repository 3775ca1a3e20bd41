"""The client API the front-ends use: daemon_available, call's errors, admin helpers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from svtd_helpers import client_snippet, private_dir

from secured_virt import client
from secured_virt.requests import Request
from secured_virt.testing.foreign import foreign_listener

pytestmark = pytest.mark.integration


def test_daemon_available(fake_daemon, test_users, readable_src, as_user):
    assert client.daemon_available(fake_daemon.socket)
    assert not client.daemon_available(str(fake_daemon.workdir / "nope.sock"))
    assert not client.daemon_available(str(fake_daemon.workdir / "policy.json"))  # a file
    body = "print(json.dumps(client.daemon_available(sys.argv[1])))\n"
    alice = test_users["svt-alice"]
    res = as_user(alice, [*client_snippet(readable_src, body), fake_daemon.socket])
    assert json.loads(res.stdout) is True
    os.chmod(fake_daemon.socket, 0o660)  # root's group only: alice may not connect
    res = as_user(alice, [*client_snippet(readable_src, body), fake_daemon.socket])
    assert json.loads(res.stdout) is False


def test_call_errors_name_the_problem():
    d = private_dir("svtd-cli-")
    try:
        with pytest.raises(client.ClientError) as info:
            client.call(str(d / "missing.sock"), Request("list"))
        assert info.value.code == "unavailable"
        assert "svirtd is not running: no socket at" in str(info.value)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(d / "stale.sock"))  # bound, never listening: like a crashed daemon's
        with pytest.raises(client.ClientError) as info:
            client.call(str(d / "stale.sock"), Request("list"))
        assert info.value.code == "unavailable"
        assert "refused the connection" in str(info.value)
        stale.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_call_timeout(start_fake_daemon):
    d = start_fake_daemon()
    with pytest.raises(client.ClientError) as info:
        client.call(d.socket, Request("sleep", {"seconds": 3}), timeout=0.5)
    assert info.value.code == "timeout"
    assert client.call(d.socket, Request("echo", {"a": 1})).data == {"a": 1}


def test_server_that_is_not_svirtd():
    """A socket that answers with nonsense is reported, not crashed on."""
    d = private_dir("svtd-cli-")
    path = str(d / "fake.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        conn.recv(4096)
        conn.sendall((7).to_bytes(4, "big") + b"garbage")
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        with pytest.raises(client.ClientError) as info:
            client.call(path, Request("list"), timeout=5)
        assert info.value.code == "protocol"
        assert "malformed frame" in str(info.value)
    finally:
        t.join()
        srv.close()
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_a_socket_served_by_another_user_is_not_svirtd(test_users, readable_src, as_user):
    """svirtd runs as root: whoever else serves the socket (a user who got a path in front
    of root's svirsh or another user's --socket) gets no request and no hello, and so can
    never show a password prompt; the kernel names the server (SO_PEERCRED)."""
    bob, alice = test_users["svt-bob"], test_users["svt-alice"]
    with foreign_listener(bob, connections=2) as fake:
        path = str(fake.path)
        with pytest.raises(client.ClientError) as info:  # root
            client.call(path, Request("list", {"all": True}))
        assert info.value.code == "untrusted"
        assert f"served by uid {bob.pw_uid}, not by root, so it is not svirtd" in str(info.value)
        body = (
            "try:\n"
            "    client.call(sys.argv[1], Request('list'))\n"
            "    print('sent')\n"
            "except client.ClientError as e:\n"
            "    print(e.code)\n"
        )
        res = as_user(alice, [*client_snippet(readable_src, body), path])  # another user
        assert res.stdout.strip() == "untrusted", res.stderr
        assert fake.received() == 0  # not even the hello left the client


def test_root_svirsh_refuses_a_socket_svirtd_does_not_serve(test_users):
    """Root's svirsh given that socket with --socket says so and stops (exit 1, no
    traceback): it neither talks to another user's socket nor runs in-process instead."""
    with foreign_listener(test_users["svt-bob"]) as fake:
        svirsh = str(Path(__file__).resolve().parents[2] / "bin" / "svirsh")
        res = subprocess.run(
            [svirsh, "--socket", str(fake.path), "list"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert "not by root, so it is not svirtd" in res.stderr
        assert "Traceback" not in res.stderr
        assert fake.received() == 0
