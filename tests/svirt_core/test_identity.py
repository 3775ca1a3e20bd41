"""identity.py: the caller comes from the kernel — real uid, SO_PEERCRED, /proc — never $USER."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from secured_virt.access.identity import (
    Identity,
    IdentityError,
    identify_peer,
    identify_process,
    parse_proc_stat,
    read_proc_stat,
)

SHOW = (
    "import json, dataclasses\n"
    "from secured_virt.access.identity import identify_process, IdentityError\n"
    "try:\n"
    "    i = identify_process({as_user!r})\n"
    "    print(json.dumps(dict(dataclasses.asdict(i), effective_user=i.effective_user)))\n"
    "except IdentityError as e:\n"
    "    print(json.dumps({{'error': str(e)}}))\n"
)

FORGED_ENV = {
    "USER": "root",
    "LOGNAME": "root",
    "HOME": "/root",
    "SUDO_UID": "0",
    "SUDO_USER": "root",
    "SUDO_GID": "0",
}


def show(as_user=None) -> str:
    return SHOW.format(as_user=as_user)


# -- own process ----------------------------------------------------------------------------


def test_root_direct():
    ident = identify_process()
    assert (ident.uid, ident.user, ident.via) == (0, "root", "direct")
    assert ident.pid == os.getpid() and ident.requested_as is None and not ident.as_refused
    assert ident.effective_user == "root" and ident.is_plain_root


def test_other_user_is_their_real_uid_and_environment_is_ignored(py_as, test_users):
    alice = test_users["svt-alice"]
    res = py_as("svt-alice", show(), env=FORGED_ENV)
    assert res.returncode == 0, res.stderr
    assert res.data["uid"] == alice.pw_uid and res.data["user"] == "svt-alice"
    assert res.data["via"] == "direct"  # forged SUDO_UID from a non-root uid is ignored
    assert res.data["groups"] == [alice.pw_gid]  # setpriv --clear-groups: kernel says so
    assert res.data["effective_user"] == "svt-alice"


def test_uid_without_passwd_entry_is_refused(py_as):
    res = py_as(None, show(), uid=54321)
    assert res.returncode == 0, res.stderr
    assert res.data == {"error": "uid 54321 has no passwd entry; refusing"}


def test_sudo_variables_honoured_for_root_when_consistent(monkeypatch, test_users):
    alice = test_users["svt-alice"]
    monkeypatch.setenv("SUDO_UID", str(alice.pw_uid))
    monkeypatch.setenv("SUDO_USER", "svt-alice")
    ident = identify_process()
    assert (ident.uid, ident.user, ident.via, ident.gid) == (
        alice.pw_uid,
        "svt-alice",
        "sudo",
        alice.pw_gid,
    )
    assert alice.pw_gid in ident.groups
    assert not ident.is_plain_root


@pytest.mark.parametrize(
    ("sudo_uid", "sudo_user"),
    [
        ("bob", "svt-alice"),  # SUDO_UID = bob's uid, SUDO_USER = alice: disagree
        (None, "svt-alice"),  # only one of the two
        ("alice", None),
        ("alice", "svt-no-such-user"),
        ("-1", "svt-alice"),
        ("alice ", "svt-alice"),
    ],
)
def test_inconsistent_sudo_variables_ignored(monkeypatch, test_users, sudo_uid, sudo_user):
    uids = {"alice": test_users["svt-alice"].pw_uid, "bob": test_users["svt-bob"].pw_uid}
    for name, value in (("SUDO_UID", sudo_uid), ("SUDO_USER", sudo_user)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            for short, uid in uids.items():
                value = value.replace(short, str(uid)) if name == "SUDO_UID" else value
            monkeypatch.setenv(name, value)
    ident = identify_process()
    assert (ident.uid, ident.user, ident.via) == (0, "root", "direct")


def test_as_from_root_acts_as_that_user(test_users):
    ident = identify_process(as_user="svt-bob")
    assert ident.requested_as == "svt-bob" and not ident.as_refused
    assert ident.as_uid == test_users["svt-bob"].pw_uid
    assert ident.acting_as == "svt-bob" and ident.effective_user == "svt-bob"
    assert ident.user == "root" and not ident.is_plain_root


def test_as_unknown_user_from_root_is_an_error():
    with pytest.raises(IdentityError, match="no such user"):
        identify_process(as_user="svt-no-such-user")


def test_as_from_non_root_is_recorded_and_refused_not_raised(py_as):
    res = py_as("svt-alice", show("svt-bob"))
    assert res.returncode == 0, res.stderr
    assert res.data["requested_as"] == "svt-bob" and res.data["as_refused"] is True
    assert res.data["effective_user"] == "svt-alice" and res.data["as_uid"] is None


def test_as_from_a_sudo_user_is_refused(monkeypatch, test_users):
    monkeypatch.setenv("SUDO_UID", str(test_users["svt-alice"].pw_uid))
    monkeypatch.setenv("SUDO_USER", "svt-alice")
    ident = identify_process(as_user="root")
    assert ident.via == "sudo" and ident.as_refused and ident.effective_user == "svt-alice"


# -- peers of svirtd --------------------------------------------------------------------------


@pytest.fixture
def listener(shared_tmp):
    path = str(shared_tmp / "peer.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)
    srv.listen(4)
    srv.settimeout(30)
    yield srv, path
    srv.close()


CONNECT = (
    "import socket\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "s.connect({path!r})\n"
    "s.recv(1)\n"
)


def accept(srv):
    conn, _ = srv.accept()
    return conn


def test_peer_is_identified_by_so_peercred(listener, spawn_py_as, test_users):
    srv, path = listener
    alice = test_users["svt-alice"]
    proc = spawn_py_as("svt-alice", CONNECT.format(path=path), env=FORGED_ENV)
    with accept(srv) as conn:
        ident = identify_peer(conn)
        also_as = identify_peer(conn, as_user="root")
    assert (ident.uid, ident.gid, ident.user, ident.via) == (
        alice.pw_uid,
        alice.pw_gid,
        "svt-alice",
        "svirtd",
    )
    assert ident.pid == proc.pid and ident.groups == (alice.pw_gid,)
    assert ident.tty is None and ident.sid is not None
    assert also_as.as_refused and also_as.requested_as == "root"
    assert also_as.effective_user == "svt-alice"


def test_root_peer_may_act_as(test_users):
    a, b = socket.socketpair()
    with a, b:
        ident = identify_peer(a, as_user="svt-carol")
    assert ident.uid == 0 and ident.effective_user == "svt-carol" and not ident.as_refused
    assert ident.as_uid == test_users["svt-carol"].pw_uid


def test_peer_without_passwd_entry_is_refused(listener, readable_src):
    import subprocess
    import sys

    srv, path = listener
    code = f"import sys; sys.path.insert(0, {str(readable_src)!r})\n" + CONNECT.format(path=path)
    proc = subprocess.Popen(
        [
            *("/usr/bin/setpriv", "--reuid=54321", "--regid=54321", "--clear-groups", "--"),
            *(sys.executable, "-I", "-c", code),
        ],
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        with accept(srv) as conn, pytest.raises(IdentityError, match="uid 54321 has no passwd"):
            identify_peer(conn)
    finally:
        proc.kill()
        proc.wait()


# -- terminals and /proc parsing ---------------------------------------------------------------


@pytest.fixture
def pty_for(test_users):
    """A pty whose slave belongs to the given user (as login would arrange)."""
    fds = []

    def make(user):
        master, slave = os.openpty()
        fds.extend((master, slave))
        name = os.ttyname(slave)
        if user:
            os.chown(name, test_users[user].pw_uid, -1)
        return name, os.fstat(slave).st_rdev

    yield make
    for fd in fds:
        os.close(fd)


TAKE_CTTY = "import os\nos.close(os.open({tty!r}, os.O_RDWR))\n"  # session leader opens a tty


def run_to_json(proc) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_own_tty_is_the_controlling_terminal(spawn_py_as, pty_for):
    name, dev = pty_for("svt-alice")
    proc = spawn_py_as("svt-alice", TAKE_CTTY.format(tty=name) + show(), start_new_session=True)
    data = run_to_json(proc)
    assert data["tty"] == name and data["tty_dev"] == dev and data["sid"] == proc.pid


def test_own_tty_not_taken_from_redirected_stdin(spawn_py_as, pty_for):
    """stdin from some terminal is not a controlling terminal: no tty is claimed."""
    name, _dev = pty_for("svt-alice")
    with open(name, "rb", buffering=0) as stdin:
        proc = spawn_py_as("svt-alice", show(), stdin=stdin, start_new_session=True)
        data = run_to_json(proc)
    assert data["tty"] is None


def test_peer_tty_and_session(listener, spawn_py_as, pty_for):
    srv, path = listener
    name, dev = pty_for("svt-alice")
    code = TAKE_CTTY.format(tty=name) + CONNECT.format(path=path)
    proc = spawn_py_as("svt-alice", code, start_new_session=True)
    with accept(srv) as conn:
        ident = identify_peer(conn)
    assert ident.tty == name and ident.tty_dev == dev
    assert ident.sid == proc.pid  # it is its own session leader


def test_comm_with_parenthesis_cannot_spoof_the_tty(listener, spawn_py_as):
    """CVE-2017-1000367: a command name like 'x) S 1 1 1 3481' must not shift the fields."""
    srv, path = listener
    fake = "x) S 1 1 1 3481"  # 15 characters: the kernel's comm limit
    code = f"open('/proc/self/comm', 'w').write({fake!r})\n" + CONNECT.format(path=path)
    proc = spawn_py_as("svt-alice", code, start_new_session=True)
    with accept(srv) as conn:
        for _ in range(100):  # the comm write happens before connect(); be safe anyway
            ps = read_proc_stat(proc.pid)
            if ps and ps.comm == fake:
                break
            time.sleep(0.01)
        ident = identify_peer(conn)
    assert ps.comm == fake
    assert ps.tty_nr == 0 and ps.session == proc.pid and ps.ppid == os.getpid()
    assert ident.tty is None and ident.tty_dev is None and ident.sid == proc.pid


def test_parse_proc_stat_takes_the_last_parenthesis():
    fields = " ".join(["S", "10", "11", "12", "34816"] + ["0"] * 14 + ["98765", "0"])
    ps = parse_proc_stat(f"4242 (evil) S 1 1 1 1) {fields}\n")
    assert ps.pid == 4242 and ps.comm == "evil) S 1 1 1 1"
    assert (ps.ppid, ps.pgrp, ps.session, ps.tty_nr, ps.starttime) == (10, 11, 12, 34816, 98765)
    with pytest.raises(ValueError):
        parse_proc_stat("4242 no parens")


def test_identity_is_frozen():
    ident = Identity(uid=1, gid=1, user="x", groups=(1,), via="direct")
    with pytest.raises(AttributeError):
        ident.uid = 0
