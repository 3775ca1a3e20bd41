"""Issue 14 items 1 and 14: under sudo the caller is the invoking user, everywhere.

Item 1: ``sudo svirsh --daemon [--socket S] destroy VM`` connected to svirtd as root, so
SO_PEERCRED said uid 0: svirtd applied root's rights (and ``--as``), and audited root.  Same
class: ``sudo svirt-admin --config X ...`` accepted a configuration only root may choose, and
``sudo svirt-admin reload`` (and an edit's reload) reached svirtd as root, past its
daemon-admin check.  Now every connection a sudo process makes to svirtd carries the invoker's
credentials, and ``--config`` is checked against the invoker.

Item 14: ``sudo svirsh define FILE`` read FILE as root.  Now it is opened with the invoker's
rights.

sudo is simulated the way identity.py trusts it and exactly as sudo hands it over: a root
process with SUDO_UID/SUDO_GID/SUDO_USER of a real account (svt-alice).  The programs run
through their hardened entry (the installed scripts' ``entry()``), against a real svirtd
(tests/daemon/svtd_helpers.RealEnv: real Service, rbac, libvirt test driver, audit log).
Their configuration path is the host's one, redirected to the test host's file the way an
installation names it (``CONFIG_PATH``), since a sudo caller may not pass ``--config``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for _p in (str(HERE.parent / "daemon"), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from svtd_helpers import PY, RealEnv, run_as_host, running_svirtd, write_root_file  # noqa: E402

from secured_virt import client  # noqa: E402
from secured_virt.requests import Request  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="simulating sudo needs a real root process"),
]


@pytest.fixture
def host():
    """A private host with a running svirtd (root), whose socket every uid may connect to."""
    with running_svirtd() as e:
        yield e


@pytest.fixture
def alice(test_users):
    return test_users["svt-alice"]


def _state(host, vm: str) -> str:
    reply = client.call(host.socket, Request("domstate", {"domain": vm}), password_cb=None)
    assert reply.ok, reply
    return json.dumps(reply.data)


def _digest(host) -> str:
    """The digest of the UA/PA svirtd enforces (asked as root, this test process)."""
    return client.admin_status(host.socket, timeout=30).data["service"]["policy"]["digest"]


def _decisions(host, **match) -> list[dict]:
    return [
        r
        for r in host.audit_records()
        if r.get("type") == "decision" and all(r.get(k) == v for k, v in match.items())
    ]


# -- item 1: svirsh --daemon under sudo -------------------------------------------------------
@pytest.mark.parametrize("route", ["--daemon", "--daemon --socket S"])
def test_sudo_svirsh_reaches_svirtd_as_the_caller(host, alice, route):
    """Without the fix root destroyed shared-dns (no role of alice's covers it) and the
    audit said root."""
    assert "running" in _state(host, "shared-dns")
    args = route.replace("S", host.socket).split()
    r = run_as_host("svirsh", host.config, [*args, "destroy", "shared-dns"], sudo=alice)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "svt-alice" in r.stderr and "destroy" in r.stderr
    assert "running" in _state(host, "shared-dns")
    (rec,) = _decisions(host, op="destroy")
    assert (rec["user"], rec["uid"], rec["verdict"]) == ("svt-alice", alice.pw_uid, "denied")
    assert rec["via"] == "svirtd"
    # root appears only for this test's own domstate checks
    assert {x.get("op") for x in host.audit_records() if x.get("user") == "root"} <= {
        "domstate",
        None,
    }


def test_sudo_svirsh_as_is_refused_by_svirtd_and_audited(host, alice):
    """--as is root's alone; through sudo the caller is alice, so svirtd refuses it (before
    the fix root acted as svt-bob and destroyed bob-build)."""
    argv = ["--daemon", "--socket", host.socket, "--as", "svt-bob", "destroy", "bob-build"]
    r = run_as_host("svirsh", host.config, argv, sudo=alice)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "--as" in r.stderr
    assert "running" in _state(host, "bob-build")
    (rec,) = _decisions(host, op="destroy")
    assert rec["user"] == "svt-alice" and rec["verdict"] == "denied"
    assert rec["requested_as"] == "svt-bob" and rec["acting_as"] is None


def test_sudo_svirsh_still_does_what_the_caller_may(host, alice):
    """The same route for something alice's role allows: served, and audited as alice."""
    r = run_as_host("svirsh", host.config, ["--daemon", "start", "alice-db"], sudo=alice)
    assert r.returncode == 0, (r.stdout, r.stderr)
    (rec,) = _decisions(host, op="start")
    assert rec["user"] == "svt-alice" and rec["verdict"] == "allowed"


# -- item 1: svirt-admin under sudo -----------------------------------------------------------
def test_sudo_svirt_admin_reload_is_checked_for_the_caller(host, alice, test_users):
    """alice holds no daemon-admin: refused by svirtd and audited as her (before the fix the
    reload ran as root, past the check).  carol holds it: her reload is served."""
    r = run_as_host("svirt-admin", host.config, ["reload"], sudo=alice)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "svt-alice" in r.stderr and "daemon-admin" in r.stderr
    (rec,) = _decisions(host, op="daemon-admin")
    assert rec["user"] == "svt-alice" and rec["verdict"] == "denied"
    carol = test_users["svt-carol"]
    r = run_as_host("svirt-admin", host.config, ["reload"], sudo=carol)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert _decisions(host, op="daemon-admin", user="svt-carol", verdict="allowed")


def test_sudo_svirt_admin_status_is_checked_for_the_caller(host, alice):
    r = run_as_host("svirt-admin", host.config, ["status"], sudo=alice)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "uptime" not in r.stdout


def _policy_admin_host(alice, *, daemon_admin: bool) -> RealEnv:
    """A second root-owned configuration whose UA makes svt-alice a policy admin (rbac-admin,
    and daemon-admin if asked): the kind of file a sudo caller must not pick with --config."""
    e = RealEnv()
    ua = e.ua.read_text().replace(
        '<User name="svt-alice"><UserRole role="WebTeam"/></User>',
        f'<User name="{alice.pw_name}"><UserRole role="PolicyAdmins"/></User>',
    )
    write_root_file(e.ua, ua)
    ops = '<operation name="rbac-admin"/>' + (
        '<operation name="daemon-admin"/>' if daemon_admin else ""
    )
    pa = e.pa.read_text().replace(
        "</RolePolicyDefinition>",
        '  <Role name="PolicyAdmins">\n'
        '    <ManageVM type="individual"><VM name="Domain-0"/></ManageVM>\n'
        f"    <ControlOperation><Accept>{ops}</Accept></ControlOperation>\n"
        "  </Role>\n</RolePolicyDefinition>",
    )
    write_root_file(e.pa, pa)
    return e


@pytest.fixture
def other_host(alice):
    e = _policy_admin_host(alice, daemon_admin=True)
    yield e
    e.cleanup()


@pytest.mark.parametrize(
    "args",
    [
        ["assign", "svt-alice", "Auditor", "--yes"],
        ["grant", "WebTeam", "destroy", "all", "--yes"],
        ["reload"],
        ["status"],
    ],
    ids=lambda a: a[0],
)
def test_sudo_svirt_admin_cannot_choose_the_configuration(host, other_host, alice, args):
    """Before the fix, edit/assign/grant (admin_edit) and status/reload (admin_daemon) took
    --config from a sudo caller: alice became a policy admin of other_host's files."""
    ua, pa = other_host.ua.read_bytes(), other_host.pa.read_bytes()
    r = run_as_host(
        "svirt-admin", host.config, ["--config", str(other_host.config), *args], sudo=alice
    )
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "only root may choose another configuration file" in r.stderr
    assert (other_host.ua.read_bytes(), other_host.pa.read_bytes()) == (ua, pa)
    assert other_host.audit_records() == []


def test_root_still_chooses_the_configuration(host):
    r = run_as_host("svirt-admin", host.config, ["--config", str(host.config), "status", "--json"])
    assert r.returncode == 0, r.stderr
    assert "daemon" in json.loads(r.stdout)


@pytest.mark.parametrize("daemon_admin", [True, False])
def test_delegated_edit_reloads_svirtd_as_the_caller(alice, daemon_admin):
    """A delegated admin's install asks svirtd to reload with *her* credentials: svirtd checks
    and audits her, never root (before the fix: a reload by root, unchecked).  Without
    daemon-admin she is told that svirtd picks the files up itself; the install stands."""
    e = _policy_admin_host(alice, daemon_admin=daemon_admin)
    e.d = e.daemon().start().wait_ready()
    try:
        before = _digest(e)
        argv = ["assign", "svt-carol", "BuildTeam", "--yes"]
        r = run_as_host("svirt-admin", e.config, argv, sudo=alice)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "svt-carol is assigned role BuildTeam" in r.stdout
        if daemon_admin:
            assert "svirtd reloaded the policy" in r.stdout
        else:
            assert "svirtd did not reload at svt-alice's request" in r.stdout
            assert "loads them itself" in r.stdout
        recs = _decisions(e, op="daemon-admin")
        assert [(x["user"], x["verdict"], x["via"]) for x in recs] == [
            ("svt-alice", "allowed" if daemon_admin else "denied", "svirtd")
        ]
        # either way svirtd ends up enforcing the new files, as the message says
        deadline = time.monotonic() + 30
        while _digest(e) == before:
            assert time.monotonic() < deadline, "svirtd never loaded the installed files"
            time.sleep(0.1)
    finally:
        e.d.stop()
        e.cleanup()


# -- item 14: define/create read FILE with the caller's rights --------------------------------
@pytest.fixture
def files(alice):
    """A root-only XML file (0600 root) and one of alice's, in a directory anyone may enter."""
    d = Path(tempfile.mkdtemp(prefix="svt-sudo-files-", dir="/tmp"))
    os.chmod(d, 0o755)
    secret = d / "secret.xml"
    secret.write_text("<domain><root-only-secret-tag/></dom>")
    os.chmod(secret, 0o600)
    mine = d / "mine.xml"
    mine.write_text("<domain><alices-own-tag/></dom>")
    os.chown(mine, alice.pw_uid, alice.pw_gid)
    os.chmod(mine, 0o600)
    yield secret, mine
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("command", ["define", "create"])
def test_sudo_define_cannot_read_a_root_only_file(host, alice, files, command):
    secret, _mine = files
    r = run_as_host("svirsh", host.config, [command, str(secret)], sudo=alice)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"cannot read {secret}: Permission denied" in r.stderr
    assert "root-only-secret-tag" not in r.stdout + r.stderr


@pytest.mark.parametrize("route", [[], ["--daemon"]])
def test_sudo_define_reads_the_callers_own_file(host, alice, files, route):
    """alice's own 0600 file is read (as her): its content reaches the XML check."""
    _secret, mine = files
    r = run_as_host("svirsh", host.config, [*route, "define", str(mine)], sudo=alice)
    assert "cannot read" not in r.stderr, r.stderr
    assert r.returncode == 2 and "domain XML is not well-formed" in r.stderr, r.stderr


# -- the one place that connects: every client call from a sudo process ----------------------
_CLIENT_CALLS = (
    "import sys; sys.path.insert(0, {repo!r})\n"
    "import os\n"
    "from secured_virt import client\n"
    "from secured_virt.requests import Request\n"
    "path, how = sys.argv[1], sys.argv[2]\n"
    "if how == 'euid-bob':\n"
    "    os.seteuid(int(sys.argv[3]))\n"
    "calls = {{\n"
    "    'call': lambda: client.call(path, Request('list', {{}}), password_cb=None, timeout=5),\n"
    "    'status': lambda: client.admin_status(path, timeout=5),\n"
    "    'reload': lambda: client.admin_reload(path, timeout=5),\n"
    "    'console': lambda: client.console(path, 'vm', stdin_fd=0),\n"
    "}}\n"
    "try:\n"
    "    calls[sys.argv[-1]]()\n"
    "except client.ClientError as exc:\n"
    "    print(exc.code, exc)\n"
)


@pytest.mark.parametrize("api", ["call", "status", "reload", "console"])
def test_every_client_call_under_sudo_connects_as_the_caller(alice, api):
    """Whatever a front-end asks svirtd (a request, status, reload, a console), a sudo process
    connects with the invoker's uid, gid and groups: that is what SO_PEERCRED reports."""
    import socket

    d = Path(tempfile.mkdtemp(prefix="svt-sudo-peer-", dir="/tmp"))
    os.chmod(d, 0o755)
    path = str(d / "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o666)
    srv.listen(1)
    srv.settimeout(60)
    env = {
        "PATH": "/usr/bin:/bin",
        "SUDO_UID": str(alice.pw_uid),
        "SUDO_GID": str(alice.pw_gid),
        "SUDO_USER": alice.pw_name,
    }
    proc = subprocess.Popen(
        [PY, "-I", "-c", _CLIENT_CALLS.format(repo=str(REPO)), path, "sudo", api],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        conn, _ = srv.accept()
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        _pid, uid, gid = (int.from_bytes(raw[i : i + 4], sys.byteorder) for i in (0, 4, 8))
        groups = conn.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_PEERGROUPS", 59), 256)
        conn.close()
    finally:
        out, err = proc.communicate(timeout=60)
        srv.close()
        shutil.rmtree(d, ignore_errors=True)
    assert (uid, gid) == (alice.pw_uid, alice.pw_gid), (out, err)
    n = len(groups) // 4
    peer_groups = {int.from_bytes(groups[4 * i : 4 * i + 4], sys.byteorder) for i in range(n)}
    assert 0 not in peer_groups and peer_groups <= set(os.getgrouplist(alice.pw_name, alice.pw_gid))


def test_a_sudo_process_that_cannot_switch_does_not_connect_as_root(alice, test_users):
    """Real uid 0 but another effective uid (it cannot take on alice's rights): the client
    refuses to connect rather than going on with whatever it has."""
    bob = test_users["svt-bob"]
    env = {
        "PATH": "/usr/bin:/bin",
        "SUDO_UID": str(alice.pw_uid),
        "SUDO_GID": str(alice.pw_gid),
        "SUDO_USER": alice.pw_name,
    }
    code = _CLIENT_CALLS.format(repo=str(REPO))
    r = subprocess.run(
        [PY, "-I", "-c", code, "/nonexistent.sock", "euid-bob", str(bob.pw_uid), "call"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout.startswith("identity "), (r.stdout, r.stderr)
    assert "refusing to connect as root" in r.stdout
