"""Helpers for svirtd tests: a daemon process on a private socket, and clients as real uids.

The daemon always runs as a separate process (root, like in production) so that signals,
SO_PEERCRED and socket permissions are the kernel's, not simulated.  Clients run either in this
(root) process - for raw protocol abuse - or as svt-alice/svt-bob/svt-carol through setpriv,
importing the client from the world-readable snapshot of the tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from secured_virt.testing.asuid import setpriv_prefix

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PY = sys.executable
RUN_FAKE = HERE / "run_fake_svirtd.py"


def private_dir(prefix: str) -> Path:
    """A fresh directory other uids can traverse (the socket must be reachable by them)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


class Daemon:
    """A svirtd process: start, wait until it answers, signal, stop, read its log."""

    def __init__(self, argv: list[str], workdir: Path, socket_path: Path, env=None):
        self.argv = argv
        self.workdir = workdir
        self.socket = str(socket_path)
        self.env = env
        self.log_path = workdir / f"svirtd-{len(list(workdir.glob('svirtd-*.log')))}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, *, pass_fds=(), env_extra=None, preexec_fn=None) -> Daemon:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        env.update(self.env or {})
        env.update(env_extra or {})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=pass_fds,
            preexec_fn=preexec_fn,
            cwd="/",
        )
        return self

    def wait_ready(self, timeout: float = 30) -> Daemon:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"svirtd exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.connect(self.socket)
                return self
            time.sleep(0.05)
        raise AssertionError(f"svirtd did not come up within {timeout}s:\n{self.log()}")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def write_policy(workdir: Path, allow: dict, version: int = 1) -> None:
    tmp = workdir / "policy.json.tmp"
    tmp.write_text(json.dumps({"version": version, "allow": allow}))
    os.replace(tmp, workdir / "policy.json")


DEFAULT_ALLOW = {
    "svt-alice": ["start", "stop", "console"],
    "svt-bob": ["start"],
}


# -- clients -------------------------------------------------------------------------------
def client_snippet(src: Path, body: str) -> list[str]:
    """argv running ``body`` with secured_virt.client importable from ``src``; body prints."""
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(src)!r})\n"
        "from secured_virt import client\n"
        "from secured_virt.requests import Request\n" + body
    )
    return [PY, "-I", "-c", code]


def call_as(run_as, user, src: Path, sock: str, command: str, args=None, as_user=None, **kw):
    """Run client.call as a real uid; returns the reply as a dict (or {'error': code})."""
    body = (
        "try:\n"
        f"    r = client.call({sock!r}, Request({command!r}, {args or {}!r}, {as_user!r}),"
        " password_cb=None, timeout=30)\n"
        "    print(json.dumps(r.to_dict()))\n"
        "except client.ClientError as e:\n"
        "    print(json.dumps({'error': e.code, 'message': str(e)}))\n"
    )
    res = run_as(user, client_snippet(src, body), **kw)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


# -- console clients -------------------------------------------------------------------------
def console_proc(user, src, sock, name, escape="^]") -> subprocess.Popen:
    body = (
        f"rc = client.console({sock!r}, {name!r}, stdin_fd=0, stdout_fd=1, escape={escape!r})\n"
        "sys.stdout.flush()\n"
        "sys.exit(rc)\n"
    )
    return subprocess.Popen(
        setpriv_prefix(user) + client_snippet(src, body),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
    )


def read_until(proc, needle: bytes, timeout: float = 10) -> bytes:
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        if time.monotonic() > deadline:
            raise AssertionError(f"did not see {needle!r} in {buf!r}")
        try:
            chunk = os.read(proc.stdout.fileno(), 4096)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        if not chunk:
            raise AssertionError(f"output ended before {needle!r}: {buf!r}")
        buf += chunk
    return buf


def wait_for(cond, timeout=10.0, what="condition"):
    """``cond()``'s first true value, polled until ``timeout``: what the daemon does after a
    signal or a file change is seen only by looking again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_log(d, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in d.log():
        assert time.monotonic() < deadline, f"{text!r} not in the daemon log:\n{d.log()}"
        time.sleep(0.05)


# -- raw protocol, for abuse from this process ---------------------------------------------
def frame(obj) -> bytes:
    body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
    return len(body).to_bytes(4, "big") + body


def read_frame(sock: socket.socket, timeout: float = 10) -> dict | None:
    """The next frame, or None if the daemon closed the connection."""
    sock.settimeout(timeout)
    head = _exactly(sock, 4)
    if head is None:
        return None
    body = _exactly(sock, int.from_bytes(head, "big"))
    return None if body is None else json.loads(body)


def _exactly(sock, n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def raw_connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


HELLO = {"type": "hello", "version": 1}


# -- the real svirtd around the real Service -----------------------------------------------
# svirtd's real entry point, from the tree under test (the venv's console script would import
# whatever tree its editable install points at)
SVIRTD_ARGV = [
    PY,
    "-I",
    "-c",
    f"import sys; sys.path.insert(0, {str(REPO)!r}); "
    "from secured_virt.daemon.server import main; sys.exit(main(sys.argv[1:]))",
]
DEMO = REPO / "etc" / "demo"

UA_XML = """<?xml version="1.0"?>
<UserConfiguration>
  <User name="svt-alice"><UserRole role="WebTeam"/></User>
  <User name="svt-bob"><UserRole role="BuildTeam"/></User>
  <User name="svt-carol"><UserRole role="Auditor"/><UserRole role="DaemonAdmin"/></User>
</UserConfiguration>
"""

DAEMON_ADMIN_ROLE = """  <Role name="DaemonAdmin">
    <ManageVM type="individual"><VM name="Domain-0"/></ManageVM>
    <ControlOperation><Accept><operation id="62"/></Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


def write_root_file(path: Path, text: str, mode: int = 0o644) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.chown(tmp, 0, 0)
    os.replace(tmp, path)
    return path


class RealEnv:
    """A private host: config, UA/PA for the svt-* users, the demo node, audit log, socket."""

    def __init__(self, **conf):
        self.base = private_dir("svtd-real-")
        self.etc = self.base / "etc"
        self.etc.mkdir(mode=0o755)
        self.run = self.base / "run"
        self.run.mkdir(mode=0o755)
        self.log_dir = self.base / "log"
        self.log_dir.mkdir(mode=0o700)
        self.ua = write_root_file(self.etc / "ua.xml", UA_XML)
        pa = (DEMO / "pa.xml").read_text().replace("</RolePolicyDefinition>", DAEMON_ADMIN_ROLE)
        self.pa = write_root_file(self.etc / "pa.xml", pa)
        self.node = self.etc / "node.xml"
        shutil.copy(DEMO / "node.xml", self.node)
        self.socket = str(self.run / "svirtd.sock")
        self.audit_log = str(self.log_dir / "audit.log")
        settings = {
            "uri": f"test://{self.node}",
            "ua": str(self.ua),
            "pa": str(self.pa),
            "audit_log": self.audit_log,
            "audit_syslog": "no",
            "auth_dir": str(self.base / "ts"),
            "label_store": str(self.base / "labels.xml"),
            "acm_state_dir": str(self.base / "acm"),
            "socket": self.socket,
            "socket_mode": "0666",
        }
        settings.update({k: str(v).replace("{node}", str(self.node)) for k, v in conf.items()})
        text = "[secured-virt]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        self.config = write_root_file(self.etc / "secured-virt.conf", text)

    def daemon(self, *extra: str) -> Daemon:
        argv = [*SVIRTD_ARGV, "--config", str(self.config), "--log-level", "debug", *extra]
        return Daemon(argv, self.base, Path(self.socket))

    def audit_records(self) -> list[dict]:
        """The whole records on disk (a line still being written, or torn, is left out)."""
        try:
            with open(self.audit_log) as fh:
                return [json.loads(line) for line in fh if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def running_svirtd(**conf):
    """A RealEnv (``conf`` as for RealEnv) whose svirtd is started and ready as ``env.d``;
    stopped and its host removed afterwards.  Most real-daemon fixtures are just this, so it is
    written once.  Skips unless root: the policy files it writes must be root-owned."""
    if os.geteuid() != 0:
        import pytest  # here, not at the top: bench/ imports this module too

        pytest.skip("svirtd's policy files must be root-owned: run as root")
    e = RealEnv(**conf)
    try:
        e.d = e.daemon().start().wait_ready()
        try:
            yield e
        finally:
            e.d.stop()
    finally:
        e.cleanup()


#: run a program's real entry() with the host configuration path pointing at the test host
_ENTRY = (
    "import sys; sys.path.insert(0, {repo!r})\n"
    "import secured_virt.config as config\n"
    "import secured_virt.cli.svirsh as svirsh_mod\n"
    "config.CONFIG_PATH = svirsh_mod.CONFIG_PATH = sys.argv.pop(1)\n"
    "sys.argv[0] = {prog!r}\n"
    "from {module} import entry\n"
    "entry()\n"
)
_ENTRY_MODULES = {"svirsh": "secured_virt.cli.svirsh", "svirt-admin": "secured_virt.cli.admin"}


def run_as_host(
    prog: str, conf: Path, args, *, sudo=None, input: str = "", cwd: str = "/"
) -> subprocess.CompletedProcess:
    """``prog`` (svirsh or svirt-admin) as root, or as a simulated sudo caller (``sudo``: the
    caller's passwd entry), through its real entry() with ``conf`` as the host's configuration
    path (``CONFIG_PATH``), as an installation names it: so no ``--config`` is needed, which
    would itself change what the programs do."""
    code = _ENTRY.format(repo=str(REPO), prog=prog, module=_ENTRY_MODULES[prog])
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if sudo is not None:
        env.update(
            SUDO_UID=str(sudo.pw_uid),
            SUDO_GID=str(sudo.pw_gid),
            SUDO_USER=sudo.pw_name,
            SUDO_COMMAND=f"/usr/bin/{prog}",
        )
    return subprocess.run(
        [PY, "-I", "-c", code, str(conf), *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
