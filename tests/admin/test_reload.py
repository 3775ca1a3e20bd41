"""After an install, a running svirtd is told to reload — tested against a real svirtd."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from admin_helpers import DEMO, PY, child_env

import rbac
from secured_virt import client
from secured_virt.access.operations import CATALOGUE


@pytest.fixture
def svirtd(admin_env):
    run = admin_env.base / "run"
    run.mkdir(mode=0o755)
    node = admin_env.etc / "node.xml"
    shutil.copy(DEMO / "node.xml", node)
    admin_env.write_config(
        uri=f"test://{node}",
        auth_dir=admin_env.base / "ts",
        label_store=admin_env.base / "labels.xml",
        acm_state_dir=admin_env.base / "acm",
        socket_mode="0666",
    )
    log = open(admin_env.base / "svirtd.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [PY, "-m", "secured_virt.daemon.server", "--config", str(admin_env.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.admin_status(str(admin_env.socket), timeout=5).status == 0:
                break
        except client.ClientError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail("svirtd did not start:\n" + (admin_env.base / "svirtd.log").read_text())
        time.sleep(0.1)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_install_makes_svirtd_reload(admin_env, svirtd):
    before = client.admin_status(str(admin_env.socket)).data["service"]["policy"]["digest"]
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 0, r.stderr
    assert "svirtd reloaded the policy" in r.stdout
    want = rbac.load(admin_env.ua, admin_env.pa, CATALOGUE.names).digest
    status = client.admin_status(str(admin_env.socket)).data
    assert want != before
    # (svirtd also watches the files, so which reload came last is not asserted)
    assert status["service"]["policy"]["digest"] == want
    # make test builds rbac's C index; svirtd says which engine answers
    assert status["service"]["policy"]["decisions"] == "C index"


def test_dead_daemon_socket_is_not_an_error(admin_env):
    admin_env.socket.parent.mkdir(mode=0o755)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(admin_env.socket))
    s.close()  # the file stays, nobody listens
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 0, r.stderr
    assert "svirtd not reached" in r.stdout
    assert 'role="Auditor"' in admin_env.ua.read_text().split("bob")[0]


def test_no_daemon_no_message(admin_env):
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 0
    assert "svirtd" not in r.stdout
