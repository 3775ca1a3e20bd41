"""The client API the front-ends use: daemon_available, call's errors, admin helpers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading

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
