"""A private secured-virt host for the benchmarks: node file, role files, config, svirtd.

Shared by bench_client.py and bench_daemon.py so both measure the same thing: a libvirt
test-driver node of N domains, a role that lets one non-root user (``svt-bench``, created
if missing) list/inspect/start/destroy them, and a svirtd from this tree (``python -I``, as
root, like production) on a private socket.  Nothing here is timed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
BENCH_USER = "svt-bench"

_DOMAIN = """\
  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <metadata>
      <svirt:vm xmlns:svirt="https://secured-virt.org/xmlns/svirt/1">
        <svirt:owner>{owner}</svirt:owner>
      </svirt:vm>
    </metadata>
    <memory unit="MiB">512</memory>
    <currentMemory unit="MiB">512</currentMemory>
    <vcpu>1</vcpu>
    <os><type arch="x86_64">hvm</type></os>
    <test:runstate>{state}</test:runstate>
  </domain>
"""


def machine() -> dict:
    """What the figures were measured on, and how busy it was."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


_GIT_STATUS = ("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no")


def git_state() -> tuple[str, bool] | None:
    """The commit measured and whether the tree differs from it (None: not a git checkout).
    RESULTS.md and bench/out are the runs' own output, not a change to what is measured."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [*_GIT_STATUS, "--", ".", ":!bench/RESULTS.md", ":!bench/out"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head, bool(dirty)


def git_commit() -> str:
    """The commit measured (with '+dirty' when the tree differs from it)."""
    state = git_state()
    if state is None:
        return "unknown"
    return state[0] + ("+dirty" if state[1] else "")


def stamp() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "machine": machine(),
    }


#: where syslog(3) sends: svirtd's audit (``audit_syslog = yes``, the default) writes every
#: record there too
SYSLOG_SOCKET = "/dev/log"

_SINK = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
sys.stdout.write("%d\n" % os.stat(sys.argv[1]).st_ino)
sys.stdout.flush()
while True:
    s.recv(65536)
"""

_sink: list = []  # [(process, inode)] of the receiver this process started, if any


def _stop_on_signal(signum, _frame):
    """SIGTERM/SIGHUP end a bench like Ctrl-C: as SystemExit, so every ``finally`` (each
    Host's svirtd, its files, libvirtd's domains) and the receiver's atexit still run.
    Killed otherwise, a bench left its svirtd and the syslog receiver behind."""
    raise SystemExit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_sig) is signal.SIG_DFL:
        signal.signal(_sig, _stop_on_signal)


def _listening(path: str) -> bool:
    """Whether something receives datagrams on ``path`` (a socket left by a receiver that
    died has nobody behind it: syslog(3) would drop every message)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def syslog_receiver() -> str:
    """Make sure svirtd's syslog messages have somewhere to go, as on any host (journald or
    rsyslog listen on /dev/log); returns which: "the machine's" or "the bench's".

    Without a listener, each syslog(3) call would try to connect again and fail, which is
    neither what a host pays nor nothing.  Where the machine has none (a bare container or VM)
    the bench starts one for as long as it runs: a separate process, like journald, reading
    and dropping each message, and removes the socket when it ends.  journald's own work
    (writing the journal) is not in it: the receiver's share of the CPU is a floor."""
    if _sink:
        return "the bench's"
    if os.path.exists(SYSLOG_SOCKET):
        if _listening(SYSLOG_SOCKET):
            return "the machine's"
        st = os.lstat(SYSLOG_SOCKET)
        if not stat.S_ISSOCK(st.st_mode):
            raise SystemExit(f"{SYSLOG_SOCKET} is not a socket; svirtd's syslog cannot go there")
        os.unlink(SYSLOG_SOCKET)  # a socket nobody listens on: ours takes its place
    proc = subprocess.Popen(
        [PY, "-I", "-c", _SINK, SYSLOG_SOCKET], stdout=subprocess.PIPE, text=True, env=ENV
    )
    inode = int(proc.stdout.readline() or 0)
    if not inode:
        proc.kill()
        raise SystemExit(f"cannot listen on {SYSLOG_SOCKET} for svirtd's syslog messages")
    _sink.append((proc, inode))
    atexit.register(_stop_syslog_receiver)
    return "the bench's"


def _stop_syslog_receiver() -> None:
    while _sink:
        proc, inode = _sink.pop()
        proc.kill()
        proc.wait()
        with contextlib.suppress(OSError):
            if os.stat(SYSLOG_SOCKET).st_ino == inode:  # ours, not one started meanwhile
                os.unlink(SYSLOG_SOCKET)


def bench_user() -> pwd.struct_passwd:
    """The non-root account the client runs as (a system account without a shell)."""
    try:
        return pwd.getpwnam(BENCH_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", BENCH_USER],
            check=True,
        )
        return pwd.getpwnam(BENCH_USER)


def as_user(user: pwd.struct_passwd) -> list[str]:
    """The argv prefix running a client as ``user`` (secured_virt.testing.asuid)."""
    sys.path.insert(0, str(REPO))
    from secured_virt.testing.asuid import setpriv_prefix

    return setpriv_prefix(user)


def write_root(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, 0, 0)
    return path


def vm_names(n: int) -> list[str]:
    return [f"vm-{i:03d}" for i in range(n)]


class Host:
    """A private config, UA/PA, audit log and socket; svirtd running.

    By default the hypervisor is a test-driver node file of ``domains`` domains owned by
    ``user``; with ``uri`` (e.g. qemu:///system) no node is written and the role names ``vms``
    on that hypervisor instead.  The role grants ``ops`` (default: list, dominfo, domstate,
    start, destroy; the load bench's denied request is suspend).  ``in_libvirtd``: the same
    domains in the test driver *inside libvirtd* (``test+unix:///default``), so every libvirt
    call is a round trip to a daemon, as svirtd makes them to qemu:///system in production.
    ``conf``: more configuration keys (or other values for the ones written here)."""

    def __init__(
        self,
        domains: int = 50,
        user: str = BENCH_USER,
        *,
        uri: str | None = None,
        vms: list[str] | None = None,
        ops: tuple[int, ...] = (2, 3, 4, 6, 13),
        idle_timeout: int = 60,
        in_libvirtd: bool = False,
        conf: dict | None = None,
    ):
        self.base = Path(tempfile.mkdtemp(prefix="svt-bench-", dir="/tmp"))
        self.base.chmod(0o755)
        etc = self.base / "etc"
        etc.mkdir()
        (self.base / "log").mkdir(mode=0o700)
        (self.base / "run").mkdir()
        self._libvirtd = None
        if in_libvirtd:
            self.names = vm_names(domains)
            uri, self._libvirtd = _libvirtd_node(self.names, user)
        elif uri is None:
            self.names = vm_names(domains)
            body = "".join(
                _DOMAIN.format(
                    name=n,
                    uuid=uuid.uuid5(uuid.NAMESPACE_DNS, n),
                    owner=user,
                    state=1 if i % 2 else 5,
                )
                for i, n in enumerate(self.names)
            )
            self.node = write_root(etc / "node.xml", f"<node>\n{body}</node>\n")
            uri = f"test://{self.node}"
        else:
            self.names = list(vms or ())
        self.uri = uri
        ua = write_root(
            etc / "ua.xml",
            "<UserConfiguration>\n"
            f'  <User name="{user}"><UserRole role="Bench"/></User>\n'
            "</UserConfiguration>\n",
        )
        vm_rows = "".join(f'      <VM name="{n}"/>\n' for n in self.names)
        op_rows = "".join(f'        <operation id="{i}"/>\n' for i in ops)
        pa = write_root(
            etc / "pa.xml",
            "<RolePolicyDefinition>\n"
            '  <Role name="Bench">\n'
            f'    <ManageVM type="individual">\n{vm_rows}    </ManageVM>\n'
            f"    <ControlOperation><Accept>\n{op_rows}    </Accept></ControlOperation>\n"
            "  </Role>\n"
            "</RolePolicyDefinition>\n",
        )
        self.socket = str(self.base / "run" / "svirtd.sock")
        self.audit_log = self.base / "log" / "audit.log"
        conf = {
            "uri": self.uri,
            "ua": ua,
            "pa": pa,
            "audit_log": self.audit_log,
            "audit_syslog": "yes",  # the default: every record to syslog too
            "auth_dir": self.base / "ts",
            "label_store": self.base / "labels.xml",
            "acm_state_dir": self.base / "acm",
            "socket": self.socket,
            "idle_timeout": idle_timeout,
            **(conf or {}),
        }
        self.syslog = syslog_receiver()
        text = "[secured-virt]\n" + "".join(f"{k} = {v}\n" for k, v in conf.items())
        self.config = write_root(etc / "secured-virt.conf", text)
        self.proc = None

    def start_daemon(self, tree: Path = REPO, script: str | None = None) -> Host:
        self.log = open(self.base / "svirtd.log", "wb")  # noqa: SIM115 - closed in stop()
        entry = (
            f"import sys; sys.path.insert(0, {str(tree)!r}); "
            "from secured_virt.daemon.server import main; sys.exit(main(sys.argv[1:]))"
        )
        # SVT_BENCH_DAEMON_SCRIPT: run svirtd through another script (e.g. a profiler)
        script = script or os.environ.get("SVT_BENCH_DAEMON_SCRIPT")
        head = [PY, "-I", script] if script else [PY, "-I", "-c", entry]
        self.proc = subprocess.Popen(
            [*head, "--config", str(self.config), "--log-level", "warning"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd="/",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"svirtd did not start: {self.base / 'svirtd.log'}") from None
                time.sleep(0.05)

    def stop_daemon(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
            self.log.close()
        self.proc = None

    def stop(self) -> None:
        self.stop_daemon()
        if self._libvirtd is not None:
            conn, self._libvirtd = self._libvirtd, None
            remove_domains(conn, self.names)
            conn.close()
        shutil.rmtree(self.base, ignore_errors=True)


#: libvirt's test driver inside libvirtd: one state for every connection to it while one
#: stays open, like a real hypervisor's
LIBVIRTD_TEST_URI = "test+unix:///default"


def libvirtd_pid() -> int | None:
    """The running libvirtd's pid (its CPU is part of what a request costs through it)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as fh:
                if fh.read().strip() == "libvirtd":
                    return int(entry)
    return None


def remove_domains(conn, names: list[str]) -> None:
    """Stop and undefine the domains ``names`` on ``conn``; one that is not there is skipped."""
    import libvirt

    for n in names:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByName(n)
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def _libvirtd_node(names: list[str], owner: str):
    """Define ``names`` in libvirtd's test:///default (odd ones running, like the node file);
    returns the URI and the connection that keeps that state alive until ``stop``."""
    import libvirt

    sys.path.insert(0, str(REPO))
    from secured_virt.testing.libvirtd import ensure_libvirtd

    status = ensure_libvirtd()
    if not status.ok:
        raise SystemExit(f"libvirtd is needed for a shared test node: {status.reason}")
    conn = libvirt.open(LIBVIRTD_TEST_URI)
    remove_domains(conn, names)  # left over from a killed run
    for i, n in enumerate(names):
        xml = _DOMAIN.format(name=n, uuid=uuid.uuid5(uuid.NAMESPACE_DNS, n), owner=owner, state=5)
        dom = conn.defineXML(xml.replace("<test:runstate>5</test:runstate>", ""))
        if i % 2:
            dom.create()
    return LIBVIRTD_TEST_URI, conn
