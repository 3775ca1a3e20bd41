"""The client API the front-ends use: daemon_available, call's errors, admin helpers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest
from svtd_helpers import client_snippet, private_dir

from secured_virt import client
from secured_virt.requests import Request

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


FAKE_SERVER = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen(8)
print("ready", flush=True)
got = 0
s.settimeout(20)
for _ in range(int(sys.argv[3])):
    c, _ = s.accept()
    c.settimeout(2)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += len(b)
    except OSError:
        pass
    c.close()
with open(sys.argv[2], "w") as fh:
    fh.write(str(got))
"""


def _fake_server(user, path: str, count: str, connections: int):
    """FAKE_SERVER listening at path as ``user``; prints "ready" once it listens."""
    import subprocess

    return subprocess.Popen(
        [
            "/usr/bin/setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "--",
            sys.executable,
            "-I",
            "-c",
            FAKE_SERVER,
            path,
            count,
            str(connections),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_socket_served_by_another_user_is_not_svirtd(test_users, readable_src, as_user):
    """svirtd runs as root: whoever else serves the socket (a user who got a path in front
    of root's svirsh or another user's --socket) gets no request and no hello, and so can
    never show a password prompt; the kernel names the server (SO_PEERCRED)."""

    bob, alice = test_users["svt-bob"], test_users["svt-alice"]
    d = private_dir("svtd-fake-")
    d.chmod(0o777)
    path, count = str(d / "svirtd.sock"), str(d / "bytes")
    server = _fake_server(bob, path, count, 2)
    try:
        assert server.stdout.readline().strip() == "ready"
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
        assert server.wait(30) == 0
        assert (d / "bytes").read_text() == "0"  # not even the hello left the client
    finally:
        server.kill()
        shutil.rmtree(d, ignore_errors=True)


def test_root_svirsh_refuses_a_socket_svirtd_does_not_serve(test_users, tmp_path):
    """Root's svirsh (whose default is svirtd when it answers) says so and stops: it neither
    talks to another user's socket nor falls back to direct mode as if nobody answered."""
    import subprocess

    bob = test_users["svt-bob"]
    d = private_dir("svtd-fake-")
    d.chmod(0o777)
    path = str(d / "svirtd.sock")
    server = _fake_server(bob, path, str(d / "bytes"), 1)
    try:
        assert server.stdout.readline().strip() == "ready"
        svirsh = str(Path(__file__).resolve().parents[2] / "bin" / "svirsh")
        res = subprocess.run(
            [svirsh, "--socket", path, "list"], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 1, (res.stdout, res.stderr)
        assert "not by root, so it is not svirtd" in res.stderr
        assert "Traceback" not in res.stderr
        assert server.wait(30) == 0 and (d / "bytes").read_text() == "0"
    finally:
        server.kill()
        shutil.rmtree(d, ignore_errors=True)
