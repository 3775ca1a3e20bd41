"""Issue 18: root's svirsh goes through svirtd when svirtd answers, like virsh to libvirtd.

Root (uid 0, not under sudo) without options asks svirtd; it runs in-process (direct mode) when
nothing answers at the socket, with ``--direct``, ``-c/--connect`` or ``--config`` naming
another configuration.  A sudo caller keeps direct mode by default.  Which way a request took
is proven twice: the decision record's ``via`` (``svirtd`` or ``direct``), and where the
libvirt test driver's state changed (svirtd holds one connection for its whole life; a direct
run opens the node file afresh and its changes die with the process).

The programs run through their real entry() with the host's configuration path pointing at
the test host's file, as an installation names it (``CONFIG_PATH``): root's default reads its
socket there, and ``--config`` would itself pick direct mode.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from svtd_helpers import PY, RealEnv, run_as_host, running_svirtd, write_root_file

from secured_virt import client
from secured_virt.requests import Request
from secured_virt.testing.foreign import foreign_listener

REPO = Path(__file__).resolve().parent.parent.parent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="root's svirsh needs a real root process"),
]


def svirsh(env: RealEnv, *args: str, sudo=None, cwd: str = "/") -> subprocess.CompletedProcess:
    """svirsh as root (or a simulated sudo caller), with ``env``'s configuration as the host's."""
    return run_as_host("svirsh", env.config, args, sudo=sudo, cwd=cwd)


@pytest.fixture
def host():
    """A private host whose svirtd is running."""
    with running_svirtd() as e:
        yield e


@pytest.fixture
def idle_host():
    """A private host whose svirtd is not running."""
    e = RealEnv()
    yield e
    e.cleanup()


def _state(host, vm: str) -> str:
    """The VM's state as svirtd's own libvirt connection has it."""
    reply = client.call(host.socket, Request("domstate", {"domain": vm}), password_cb=None)
    assert reply.ok, reply
    return json.dumps(reply.data)


def _decisions(host, op: str) -> list[dict]:
    return [r for r in host.audit_records() if r.get("type") == "decision" and r.get("op") == op]


def test_root_goes_through_svirtd_when_it_answers(host):
    assert "running" in _state(host, "shared-dns")
    r = svirsh(host, "destroy", "shared-dns")
    assert r.returncode == 0, (r.stdout, r.stderr)
    (rec,) = _decisions(host, "destroy")
    assert (rec["user"], rec["uid"], rec["verdict"], rec["via"]) == (
        "root",
        0,
        "allowed",
        "svirtd",
    )
    assert "shut off" in _state(host, "shared-dns")  # svirtd's connection did it


def test_root_as_user_through_svirtd_is_decided_for_that_user(host):
    """--as works through svirtd for root exactly as in direct mode: alice's roles decide
    (no role of hers covers shared-dns) and both names are audited."""
    r = svirsh(host, "--as", "svt-alice", "destroy", "shared-dns")
    assert r.returncode == 3, (r.stdout, r.stderr)
    (rec,) = _decisions(host, "destroy")
    assert rec["via"] == "svirtd" and rec["verdict"] == "denied"
    assert rec["requested_as"] == "svt-alice" and rec["uid"] == 0
    assert "running" in _state(host, "shared-dns")


@pytest.mark.parametrize("socket_state", ["absent", "stale"])
def test_root_runs_direct_when_svirtd_is_not_running(idle_host, socket_state):
    """No socket, or a stale one left by a dead svirtd (the file is there, nobody listens):
    the request runs in-process, silently, as root's svirsh always did."""
    if socket_state == "stale":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(idle_host.socket)
        s.close()
        assert os.path.exists(idle_host.socket)
    r = svirsh(idle_host, "destroy", "shared-dns")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "destroyed" in r.stdout
    (rec,) = _decisions(idle_host, "destroy")
    assert (rec["user"], rec["via"], rec["verdict"]) == ("root", "direct", "allowed")


def test_root_neither_talks_to_nor_steps_around_a_socket_svirtd_does_not_serve(
    idle_host, test_users
):
    """Another user's socket where svirtd's should be: root's svirsh sends it nothing (not
    even the hello) and does not fall back to direct mode as if nobody answered; it says who
    serves the socket and exits 1."""
    bob = test_users["svt-bob"]
    with foreign_listener(bob) as fake:
        os.rename(fake.path, idle_host.socket)  # the listening socket, now at svirtd's path
        r = svirsh(idle_host, "destroy", "shared-dns")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert f"served by uid {bob.pw_uid}, not by root, so it is not svirtd" in r.stderr
        assert "Traceback" not in r.stderr
        assert fake.received() == 0
        assert _decisions(idle_host, "destroy") == []  # and no direct run either


def _other_config(host) -> str:
    """The host's configuration under another name: a configuration svirtd does not run."""
    other = Path(host.base) / "etc" / "other.conf"
    write_root_file(other, Path(host.config).read_text())
    return str(other)


@pytest.mark.parametrize(
    "option",
    [["--direct"], ["-c", "test:///default"], ["--config", "OTHER"]],
    ids=["--direct", "-c", "--config"],
)
def test_options_of_direct_mode_run_in_process_with_svirtd_up(host, option):
    option = [_other_config(host) if o == "OTHER" else o for o in option]
    if option[0] == "-c":  # the test driver's own node: one VM called 'test'
        r = svirsh(host, *option, "list", "--all")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert r.stdout.split("\n")[2].split()[1] == "test"
        (rec,) = _decisions(host, "list")
        assert rec["via"] == "direct"
        return
    r = svirsh(host, *option, "destroy", "shared-dns")
    assert r.returncode == 0, (r.stdout, r.stderr)
    (rec,) = _decisions(host, "destroy")
    assert rec["via"] == "direct"
    assert "running" in _state(host, "shared-dns")  # svirtd's node never saw it


def test_config_naming_the_hosts_own_file_still_goes_through_svirtd(host):
    r = svirsh(host, "--config", str(host.config), "destroy", "shared-dns")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert _decisions(host, "destroy")[0]["via"] == "svirtd"


def test_root_asking_for_svirtd_is_told_when_it_is_not_running(idle_host):
    """--daemon/--socket name svirtd: no silent switch to direct mode."""
    for args in (["--daemon"], ["--socket", idle_host.socket]):
        r = svirsh(idle_host, *args, "destroy", "shared-dns")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "svirtd is not running" in r.stderr and "--direct" in r.stderr
    assert _decisions(idle_host, "destroy") == []


def test_direct_and_daemon_together_are_a_usage_error(host):
    r = svirsh(host, "--direct", "--daemon", "list")
    assert r.returncode == 2 and "contradict" in r.stderr
    assert host.audit_records() == [] or not _decisions(host, "list")


def test_sudo_caller_keeps_direct_mode_by_default(host, test_users):
    """sudo svirsh without --daemon runs in-process as the caller, as before (via 'sudo')."""
    alice = test_users["svt-alice"]
    r = svirsh(host, "destroy", "shared-dns", sudo=alice)
    assert r.returncode == 3, (r.stdout, r.stderr)
    (rec,) = _decisions(host, "destroy")
    assert (rec["user"], rec["via"], rec["verdict"]) == ("svt-alice", "sudo", "denied")


def test_roots_relative_save_file_is_the_callers_not_svirtds(host):
    """Root names host paths for save/restore; svirtd's working directory is '/', so the
    client makes a relative FILE absolute against the caller's own."""
    d = tempfile.mkdtemp(prefix="svt-root-save-", dir="/tmp")
    name = f"svt-route-{os.getpid()}.img"
    try:
        r = svirsh(host, "save", "alice-web", name, cwd=d)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert os.path.exists(os.path.join(d, name))
        assert not os.path.exists("/" + name)
        (rec,) = _decisions(host, "save")
        assert rec["via"] == "svirtd"
        r = svirsh(host, "restore", name, cwd=d)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "running" in _state(host, "alice-web")
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if os.path.exists("/" + name):
            os.unlink("/" + name)


def test_roots_default_through_svirtd_loads_only_the_client_path(host):
    """Deciding the way in costs one connect and no import: root's default run through svirtd
    loads the modules a user's svirsh loads (cli/bytecode.CLIENT_PATH) and nothing heavy."""
    from secured_virt.cli.bytecode import CLIENT_PATH

    code = (  # only svirsh's CONFIG_PATH: importing secured_virt.config would load more
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "import secured_virt.cli.svirsh as svirsh_mod\n"
        "svirsh_mod.CONFIG_PATH = sys.argv.pop(1)\n"
        "svirsh_mod.entry()\n"
    )
    r = subprocess.run(
        [PY, "-I", "-X", "importtime", "-c", code, str(host.config), "domstate", "alice-web"],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert r.returncode == 0 and "running" in r.stdout, r.stderr
    mods = {
        line.rsplit("|", 1)[1].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert not {m for m in mods if m.split(".")[0] in ("libvirt", "lxml", "rbac", "policy")}
    ours = {m for m in mods if m.split(".")[0] == "secured_virt"}
    listed = {
        p.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for p in CLIENT_PATH
    }
    assert ours == listed, sorted(ours ^ listed)
    (rec,) = _decisions(host, "domstate")
    assert rec["via"] == "svirtd" and rec["uid"] == 0
