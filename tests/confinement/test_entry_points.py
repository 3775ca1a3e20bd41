"""Issue 14 item 19: every entry point runs Python isolated and hardened before our code.

The attack: ``PYTHONPATH=evil /opt/secured-virt/venv/bin/svirsh`` ran the attacker's
``sitecustomize`` (and would have imported an evil ``secured_virt`` package) — as root too,
wherever root's environment carries PYTHONPATH (sudo's env_keep, a service unit).  The
interpreter acts on PYTHONPATH before any of our code runs, so only ``python -I`` on the
script's first line stops it; then the same start-up (secured_virt.hardening.start_program)
must run for the installed console scripts as for the bin/ launchers.

What is run: the real console scripts of the venv the tests run in (written by ``make setup``)
and the bin/ launchers of this tree (executed through their own first line), as root and as a
real other uid (setpriv).  The hardening is observed from outside, on the live process: an
inherited fd is closed and core dumps are off (the test hands the child both), while the
program waits on a socket the test holds.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
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

from svtd_helpers import RealEnv, setpriv_prefix  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PROGRAMS = ("svirsh", "svirt-admin", "svirtd")
#: a harmless invocation of each program, and what it prints when it really ran
HARMLESS = {
    "svirsh": (["--version"], "svirsh (secured-virt)"),
    "svirt-admin": (["operations"], "rbac-admin"),
    "svirtd": (["--help"], "svirtd"),
}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs programs as other uids: root")


@pytest.fixture
def evil(tmp_path_factory):
    """A world-readable PYTHONPATH directory whose code, if run, leaves a marker file: a
    sitecustomize (imported at interpreter start) and a ``secured_virt`` package (shadowing
    ours).  Markers go to a sticky world-writable directory, so any uid can leave one."""
    base = Path(tempfile.mkdtemp(prefix="svt-evil-", dir="/tmp"))
    os.chmod(base, 0o755)
    marks = base / "marks"
    marks.mkdir()
    os.chmod(marks, 0o1777)
    lib = base / "lib"
    (lib / "secured_virt").mkdir(parents=True)
    plant = (
        f"import os\nopen(os.path.join({str(marks)!r}, '%s-' + str(os.getuid())), 'w').close()\n"
    )
    (lib / "sitecustomize.py").write_text(plant % "sitecustomize")
    (lib / "secured_virt" / "__init__.py").write_text(plant % "package")
    for root, dirs, files in os.walk(lib):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    os.chmod(lib, 0o755)
    yield lib, marks
    shutil.rmtree(base, ignore_errors=True)


def _hostile_env(lib: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(lib),
        "PYTHONSTARTUP": str(lib / "sitecustomize.py"),
        "PYTHONUSERBASE": str(lib),
    }


def _scripts() -> list[tuple[str, Path]]:
    out = []
    for name in PROGRAMS:
        out.append((f"venv:{name}", VENV_BIN / name))
        out.append((f"bin:{name}", REPO / "bin" / name))
    return out


@pytest.mark.parametrize("who", ["root", "svt-alice"])
@pytest.mark.parametrize(("label", "script"), _scripts(), ids=[s[0] for s in _scripts()])
def test_pythonpath_code_never_runs(evil, test_users, who, label, script):
    """The real script, executed through its own first line, with PYTHONPATH naming the
    attacker's directory: the program runs normally and none of the attacker's code runs."""
    assert script.is_file(), f"{script} is missing: run `make setup`"
    lib, marks = evil
    user = None if who == "root" else test_users[who]
    if user is not None and label.startswith("bin:") and not _readable_by_others(REPO):
        pytest.skip(f"{REPO} is not readable by other uids (the CI clones into a 0700 dir)")
    name = label.split(":", 1)[1]
    args, expect = HARMLESS[name]
    r = subprocess.run(
        [*setpriv_prefix(user), str(script), *args],
        env=_hostile_env(lib),
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        stdin=subprocess.DEVNULL,
    )
    assert sorted(os.listdir(marks)) == [], f"{label} ran code from PYTHONPATH as {who}"
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout, r.stdout


def _readable_by_others(path: Path) -> bool:
    """Others may read the tree itself and search (not necessarily list) every directory
    above it, which is all that opening its files by path needs."""
    if os.stat(path).st_mode & 0o005 != 0o005:
        return False
    p = path.parent
    while True:
        if not os.stat(p).st_mode & 0o001:
            return False
        if p.parent == p:
            return True
        p = p.parent


def test_venv_scripts_start_python_isolated():
    """The first line of each console script runs python with -I (pip writes none itself;
    make setup adds it), and the script calls the hardened entry(), not main()."""
    for name in PROGRAMS:
        lines = (VENV_BIN / name).read_text().splitlines()
        assert lines[0].startswith("#!") and lines[0].split()[1:] == ["-I"], (name, lines[0])
        assert "import entry" in "\n".join(lines), (name, lines)


# -- hardening, seen on the live process ------------------------------------------------------
class _Waiter:
    """A Unix socket the program connects to; the test holds the connection open (the
    program waits for an answer) while it looks at the program's process in /proc."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="svt-entry-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.path = str(self.dir / "sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(4)
        self.sock.settimeout(60)

    def peer_pid(self) -> tuple[int, socket.socket]:
        conn, _ = self.sock.accept()
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        return int.from_bytes(raw[:4], sys.byteorder, signed=True), conn

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _core_soft_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4]
    raise AssertionError("no core limit line")


def _allow_core_dumps():
    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    want = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_CORE, (want, hard))


def _observe(argv: list[str], pid_of) -> tuple[str, bool]:
    """Start argv with an extra inherited fd and core dumps allowed; ``pid_of(proc)`` returns
    the program's pid once it waits.  Returns (core soft limit, whether the fd is still open)."""
    r, w = os.pipe()
    proc = subprocess.Popen(
        argv,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        pass_fds=(w,),
        preexec_fn=_allow_core_dumps,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    os.close(w)
    try:
        pid = pid_of(proc)
        core = _core_soft_limit(pid)
        inherited_open = os.path.exists(f"/proc/{pid}/fd/{w}")
    finally:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        os.close(r)
    assert core, (out, err)
    return core, inherited_open


@pytest.mark.parametrize("who", ["root", "svt-alice"])
def test_installed_svirsh_is_hardened(test_users, who):
    user = None if who == "root" else test_users[who]
    waiter = _Waiter()
    held = []

    def pid_of(proc):
        pid, conn = waiter.peer_pid()
        held.append(conn)
        return pid

    try:
        argv = [
            *setpriv_prefix(user),
            str(VENV_BIN / "svirsh"),
            "--daemon",
            "--socket",
            waiter.path,
        ]
        core, fd_open = _observe([*argv, "list"], pid_of)
    finally:
        for c in held:
            c.close()
        waiter.close()
    assert core == "0", "svirsh runs without harden_process: core dumps still allowed"
    assert not fd_open, "svirsh runs without harden_process: an inherited fd stayed open"


def test_installed_svirt_admin_is_hardened():
    env = RealEnv()
    waiter = _Waiter()
    held = []
    try:
        text = env.config.read_text().replace(env.socket, waiter.path)
        env.config.write_text(text)

        def pid_of(proc):
            pid, conn = waiter.peer_pid()
            held.append(conn)
            return pid

        argv = [str(VENV_BIN / "svirt-admin"), "--config", str(env.config), "status"]
        core, fd_open = _observe(argv, pid_of)
    finally:
        for c in held:
            c.close()
        waiter.close()
        env.cleanup()
    assert core == "0" and not fd_open, (core, fd_open)


def test_installed_svirtd_is_hardened():
    env = RealEnv()

    def pid_of(proc):
        deadline = time.monotonic() + 60
        while not os.path.exists(env.socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"svirtd did not start: {proc.communicate()}")
            time.sleep(0.05)
        return proc.pid

    try:
        argv = [str(VENV_BIN / "svirtd"), "--config", str(env.config)]
        core, fd_open = _observe(argv, pid_of)
    finally:
        env.cleanup()
    assert core == "0" and not fd_open, (core, fd_open)


def test_root_refuses_a_python_that_is_not_isolated(tmp_path):
    """A console script regenerated without -I (a plain pip install): root's start-up says
    so and stops instead of running on after PYTHONPATH was honoured."""
    script = tmp_path / "svirsh"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom secured_virt.cli.svirsh import entry\n"
        "sys.exit(entry())\n"
    )
    script.chmod(0o755)
    r = subprocess.run(
        [str(script), "--version"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 4, r
    assert "not isolated (-I)" in r.stderr and "svirsh (secured-virt)" not in r.stdout
