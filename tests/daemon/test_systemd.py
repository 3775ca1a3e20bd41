"""systemd integration: socket activation (LISTEN_FDS on fd 3), sd_notify, and the unit files."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from svtd_helpers import PY, REPO, RUN_FAKE, Daemon, private_dir, write_policy

from secured_virt import client
from secured_virt.daemon import listener
from secured_virt.requests import Request

pytestmark = pytest.mark.integration


def activated_daemon(workdir, listen_sock, notify_path=None) -> Daemon:
    """Start svirtd the way systemd does: the listening socket on fd 3, LISTEN_PID = its pid."""
    fd = listen_sock.fileno()
    env = {"LISTEN_FDS": "1"}
    if notify_path:
        env["NOTIFY_SOCKET"] = str(notify_path)
    inner = [PY, "-I", str(RUN_FAKE), str(workdir), str(workdir / "unused.sock")]
    # the shell's $$ is the pid that exec keeps: exactly what systemd puts in LISTEN_PID
    move = "" if fd == 3 else f"exec 3<&{fd}; exec {fd}<&-; "
    script = move + 'LISTEN_PID=$$ exec "$@"'
    argv = ["/bin/bash", "-c", script, "bash", *inner]  # dash cannot redirect fds >= 10
    d = Daemon(argv, workdir, workdir / "activated.sock", env=env)
    d.start(pass_fds=(fd,))
    return d


def test_socket_activation_uses_fd_3(tmp_path):
    workdir = private_dir("svtd-act-")
    try:
        write_policy(workdir, {"root": []})
        path = str(workdir / "activated.sock")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        ls.listen(16)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(workdir / "notify"))
        notify.settimeout(20)
        d = activated_daemon(workdir, ls, workdir / "notify")
        ls.close()  # only the daemon holds it now
        try:
            assert notify.recv(256) == b"READY=1"
        except TimeoutError:
            raise AssertionError(f"no READY=1 from svirtd:\n{d.log()}") from None
        reply = client.call(path, Request("whoami"), timeout=10)
        assert reply.data["user"] == "root"
        assert not (workdir / "unused.sock").exists()  # it did not make a socket of its own
        status = client.admin_status(path).data["daemon"]
        assert status["socket_activated"] is True
        d.send_signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        assert notify.recv(256) == b"STOPPING=1"
        # systemd owns the path: an activated svirtd leaves it in place
        assert (workdir / "activated.sock").exists()
        assert "a socket from systemd" in d.log()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_listen_fds_for_another_pid_are_ignored(monkeypatch):
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert listener.from_systemd(env) is None
    assert env == {}  # and are removed so children do not inherit them


def test_listen_fds_garbage_is_an_error():
    with pytest.raises(listener.ListenError):
        listener.from_systemd({"LISTEN_PID": "abc", "LISTEN_FDS": "1"})


def test_own_socket_mode_owner_and_stale_replacement():
    import os
    import stat

    d = private_dir("svtd-sock-")
    try:
        path = str(d / "s.sock")
        s1 = listener.bind_unix(path, mode=0o660, group="root")
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, 0)
        # a live daemon on the path: refuse to steal it
        with pytest.raises(listener.ListenError, match="another svirtd is already serving"):
            listener.bind_unix(path, mode=0o666, group=None)
        s1.close()  # now it is stale (nobody listening)
        s2 = listener.bind_unix(path, mode=0o666, group=None)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        s2.close()
        os.unlink(path)
        open(path, "w").close()  # a regular file is never removed
        with pytest.raises(listener.ListenError, match="is not a socket"):
            listener.bind_unix(path, mode=0o666, group=None)
        with pytest.raises(listener.ListenError, match="does not exist"):
            listener.bind_unix(str(d / "t.sock"), mode=0o666, group="no-such-group-svt")
        (d / "open").mkdir(mode=0o777)
        os.chmod(d / "open", 0o777)
        with pytest.raises(listener.ListenError, match="world-writable without the sticky bit"):
            listener.bind_unix(str(d / "open" / "s.sock"), mode=0o666, group=None)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_missing_socket_directory_is_created_reachable_under_a_strict_umask(
    test_users, readable_src, as_user
):
    import os
    import stat

    from svtd_helpers import client_snippet

    d = private_dir("svtd-sock-")
    old = os.umask(0o077)  # what svirtd runs with
    try:
        path = str(d / "run" / "secured-virt" / "s.sock")
        s = listener.bind_unix(path, mode=0o666, group=None)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.stat(d / "run" / "secured-virt").st_mode) == 0o755
        body = (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({path!r})\n"
            "print('connected')\n"
        )
        res = as_user(test_users["svt-alice"], client_snippet(readable_src, body))
        assert res.stdout.strip() == "connected", res.stderr
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_files_verify_cleanly(tmp_path):
    for name in ("svirtd.service", "svirtd.socket"):
        shutil.copy(REPO / "etc" / "systemd" / name, tmp_path / name)
    # ExecStart names the installed /usr/local/sbin/svirtd (tests/install checks it exists
    # after `make install`); here the test venv's console script stands in for it
    svc_copy = tmp_path / "svirtd.service"
    svc_copy.write_text(
        svc_copy.read_text().replace(
            "ExecStart=/usr/local/sbin/svirtd", f"ExecStart={Path(sys.executable).parent}/svirtd"
        )
    )
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "svirtd.socket", "svirtd.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"SYSTEMD_LOG_LEVEL": "notice", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr  # unknown keys are only warnings: none allowed
    unit = (REPO / "etc" / "systemd" / "svirtd.socket").read_text()
    assert "ListenStream=/run/secured-virt/svirtd.sock" in unit
    svc = (REPO / "etc" / "systemd" / "svirtd.service").read_text()
    assert "Type=notify" in svc and "ExecReload=/bin/kill -HUP $MAINPID" in svc


def test_sd_notify_is_silent_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    t0 = time.monotonic()
    listener.sd_notify("READY=1")
    assert time.monotonic() - t0 < 0.1
