"""libvirtd restarts under svirtd: in-flight work gets a clear error, then svirtd reconnects.

The libvirtd here is a private, unprivileged *session* daemon (run as svt-bob with its own
runtime directory) serving libvirt's test driver over its Unix socket, and svirtd connects to
it with ``test+unix:///NODE?socket=...``: a real remote libvirt connection that can be killed
and restarted without touching the host's system libvirtd (other tests use that one).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from svtd_helpers import RealEnv, setpriv_prefix, wait_for

from secured_virt import client
from secured_virt.requests import Request

pytestmark = pytest.mark.integration

LIBVIRTD = "/usr/sbin/libvirtd"


class SessionLibvirtd:
    def __init__(self, user, rundir: Path):
        self.user = user
        self.rundir = rundir
        self.socket = rundir / "libvirt" / "libvirt-sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            "PATH": "/usr/bin:/bin",
            "XDG_RUNTIME_DIR": str(self.rundir),
            "HOME": str(self.rundir),
            "XDG_CONFIG_HOME": str(self.rundir / "cfg"),
            "XDG_CACHE_HOME": str(self.rundir / "cache"),
        }
        self.log = open(self.rundir / "libvirtd.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*setpriv_prefix(self.user), LIBVIRTD, "--timeout", "0"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.rundir / "libvirtd.log").read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None
        for name in ("libvirt-sock", "libvirt-admin-sock", "libvirtd.pid"):
            (self.rundir / "libvirt" / name).unlink(missing_ok=True)


@pytest.fixture
def session_libvirtd(test_users):
    if not os.access(LIBVIRTD, os.X_OK):
        pytest.skip(f"{LIBVIRTD} is not installed (apt-get install libvirt-daemon)")
    bob = test_users["svt-bob"]
    rundir = Path(tempfile.mkdtemp(prefix="svt-lvd-", dir="/tmp"))
    os.chown(rundir, bob.pw_uid, bob.pw_gid)
    rundir.chmod(0o755)
    lvd = SessionLibvirtd(bob, rundir)
    lvd.start()
    yield lvd
    lvd.stop()
    shutil.rmtree(rundir, ignore_errors=True)


def test_libvirtd_restart_between_requests_is_invisible(session_libvirtd):
    """libvirtd restarts while svirtd is idle: the next request fails on the dead connection,
    svirtd reconnects and retries once, and the user just gets the answer."""
    env = RealEnv(uri=f"test+unix://{{node}}?socket={session_libvirtd.socket}")
    d = env.daemon().start().wait_ready()

    def kept():  # svirtd's events helper follows libvirtd (backends.libvirt_events)
        return client.admin_status(env.socket).data["service"]["metadata_kept"] or {}

    try:
        assert client.call(env.socket, Request("list", {"all": True})).status == 0
        wait_for(lambda: kept().get("live"), what="the events helper following libvirtd")
        first_helpers = _helpers(session_libvirtd.socket)
        assert len(first_helpers) == 1, first_helpers
        session_libvirtd.stop()
        session_libvirtd.start()
        reply = client.call(env.socket, Request("list", {"all": True}), timeout=30)
        assert reply.status == 0, reply.message
        assert len(reply.data["domains"]) == 5
        assert client.admin_status(env.socket).data["counters"]["reconnects"] == 1
        log = d.log()
        assert "the hypervisor connection was lost (libvirtd restarted?); reconnecting" in log
        assert "hypervisor connection re-established" in log
        # the old helper ended with its connection; the new connection has its own
        wait_for(lambda: kept().get("live"), what="a new events helper")
        helpers = _helpers(session_libvirtd.socket)
        assert len(helpers) == 1 and helpers != first_helpers, (first_helpers, helpers)
    finally:
        d.stop()
        env.cleanup()
    assert wait_for(lambda: not _helpers(session_libvirtd.socket), what="no helper left")


def _helpers(socket_path) -> list[int]:
    """The pids of svirtd's events helpers (backends.libvirt_watch) for this libvirtd."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"libvirt_watch" in a for a in argv) and any(
            str(socket_path).encode() in a for a in argv
        ):
            pids.append(int(entry.name))
    return sorted(pids)


def test_libvirtd_down_gives_a_clear_error_then_recovers(session_libvirtd):
    env = RealEnv(uri=f"test+unix://{{node}}?socket={session_libvirtd.socket}")
    d = env.daemon().start().wait_ready()
    try:

        def listing():
            return client.call(env.socket, Request("list", {"all": True}), timeout=30)

        assert listing().status == 0
        session_libvirtd.stop()  # libvirtd goes away and stays away
        reply = listing()
        assert reply.status == 1
        msg = reply.message
        assert msg.startswith("the connection to the hypervisor was lost (libvirtd restarted?)")
        assert "reconnecting failed: cannot connect to test+unix://" in msg
        assert "is libvirtd running?" in msg  # the backend's hint survives
        # what the failed request itself said depends on where libvirt noticed the loss
        # (a broken pipe while writing, or the RPC failing): either way it is named
        assert "the request failed with" in msg or "Broken pipe" in msg or "lost" in msg
        session_libvirtd.start()  # and comes back: the next request just works
        reply = listing()
        assert reply.status == 0, reply.message
        assert len(reply.data["domains"]) == 5
        assert "reconnecting to the hypervisor failed" in d.log()
    finally:
        d.stop()
        env.cleanup()


def test_a_streamed_list_cut_by_a_libvirtd_restart_is_not_sent_twice(session_libvirtd, test_users):
    """libvirtd restarts after a streamed list (the Xen-API's get_all_records) sent its first
    part: svirtd reconnects, but does not run the list again, whose rows would reach the
    front-end a second time and could be read as one whole answer.  The list fails; its
    decision gets an error outcome.  In-process (svirtd's Server, its session frames and the
    real Service, over a real libvirtd that is really restarted mid-list)."""
    import socket
    from types import SimpleNamespace

    from secured_virt.config import load_config
    from secured_virt.daemon import protocol as P
    from secured_virt.daemon.server import Server
    from secured_virt.service import Service

    env = RealEnv(
        uri=f"test+unix://{{node}}?socket={session_libvirtd.socket}", frontends="xenapi:svt-bob"
    )
    svc = Service.from_config(load_config(str(env.config), caller_uid=0))
    server = Server(svc, socket.socket(socket.AF_UNIX))
    sent: list[dict] = []

    def send(frame):  # what the front-end receives; libvirtd restarts after the first part
        sent.append(frame)
        if len(sent) == 1:
            session_libvirtd.stop()
            session_libvirtd.start()

    front = SimpleNamespace(uid=test_users["svt-bob"].pw_uid, pid=os.getpid(), identity=None,
                            who="test", send=send)  # fmt: skip
    carol = test_users["svt-carol"]
    token, _ = server.websessions.store.issue("svt-carol", carol.pw_uid, "xenapi", None)
    msg = {"type": P.SESSION_REQUEST, "token": token, "peer": "127.0.0.1:4000",
           "request": {"command": "list", "args": {"all": True, "stream": 1}}}  # fmt: skip
    try:
        _talk, reply = server.websessions.handle(front, msg)
        names = [row["name"] for frame in sent for row in frame["rows"]]
        assert len(names) == len(set(names)) == 1, names  # the first part, once
        assert reply.status == 1, reply
        assert server._connection_problem() is None  # reconnected for the next request
        records = env.audit_records()
        (decision,) = [r for r in records if r.get("op") == "list" and r["type"] == "decision"]
        (outcome,) = [r for r in records if r.get("ref") == decision["seq"]]
        assert outcome["outcome"].startswith("error:"), outcome
    finally:
        server._close_service()
        env.cleanup()
