"""Bring up a real system libvirtd (+ virtlogd) with the QEMU driver for integration tests.

There is no systemd here, and the Debian packages (libvirt-daemon, libvirt-daemon-driver-qemu,
qemu-system-x86, libvirt-clients) may be installed without their maintainer scripts having
run: no ``libvirt-qemu`` user, no /var/log/libvirt, no /run/libvirt.  ``ensure_libvirtd``
creates what is missing, starts the daemons in the background (``virtlogd -d``,
``libvirtd -d``) only if they are not already answering, waits for the socket and for
``qemu:///system`` to accept a connection, and checks that QEMU can run x86_64 guests under
TCG (``<domain type='qemu'>``: no /dev/kvm needed).

It never raises for an environment problem: it returns a status whose ``reason`` says exactly
what was missing, so a test can skip with that sentence.  ``status.stop()`` ends only the
daemons this call started (by the pid they wrote), never ones that were already running.

Usable from any test area::

    from secured_virt.testing.libvirtd import ensure_libvirtd
    status = ensure_libvirtd()
    if not status.ok:
        pytest.skip(status.reason)
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LIBVIRTD = Path("/usr/sbin/libvirtd")
VIRTLOGD = Path("/usr/sbin/virtlogd")
QEMU = Path("/usr/bin/qemu-system-x86_64")
RUN_DIR = Path("/run/libvirt")
LOG_DIR = Path("/var/log/libvirt")
LIBVIRT_SOCK = RUN_DIR / "libvirt-sock"
VIRTLOGD_SOCK = RUN_DIR / "virtlogd-sock"
LIBVIRTD_PID = Path("/run/libvirtd.pid")
VIRTLOGD_PID = Path("/run/virtlogd.pid")
QEMU_USER = "libvirt-qemu"
SYSTEM_URI = "qemu:///system"
PACKAGES = "libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


@dataclass
class LibvirtdStatus:
    ok: bool
    reason: str = ""
    uri: str = SYSTEM_URI
    started: list[tuple[str, int]] = field(default_factory=list)  # (program, pid) we started
    log: Path = LOG_DIR / "libvirtd.log"

    def stop(self, timeout: float = 15.0) -> bool:
        """Terminate the daemons this status started (newest first), by pid.

        Several test sessions may share one host: if guests are still running on the daemon
        we started, someone else is using it, so it is left running (returns False).
        """
        if not self.started:
            return True
        busy = _active_domains(self.uri)
        if busy:
            self.reason = f"left libvirtd running: guests still active ({', '.join(busy)})"
            return False
        while self.started:
            _prog, pid = self.started.pop()
            _terminate(pid, timeout)
        return True


def _active_domains(uri: str) -> list[str]:
    try:
        import libvirt
    except ImportError:
        return []
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return []
    try:
        return sorted(d.name() for d in conn.listAllDomains(1))  # 1: ACTIVE
    except libvirt.libvirtError:
        return []
    finally:
        conn.close()


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _answers(sock: Path) -> bool:
    """True if something accepts connections on the Unix socket (a stale file does not)."""
    if not sock.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _wait_for(sock: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(sock):
            return True
        time.sleep(0.1)
    return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join(text)


def ensure_qemu_user() -> str | None:
    """Create the libvirt-qemu group and user if missing; an error sentence or None."""
    try:
        grp.getgrnam(QEMU_USER)
    except KeyError:
        r = subprocess.run(
            ["/usr/sbin/groupadd", "--system", QEMU_USER],
            env=_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            return f"cannot create group {QEMU_USER}: {r.stderr.strip()}"
    try:
        pwd.getpwnam(QEMU_USER)
    except KeyError:
        r = subprocess.run(
            [
                "/usr/sbin/useradd",
                "--system",
                "--gid",
                QEMU_USER,
                "--home-dir",
                "/var/lib/libvirt",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                QEMU_USER,
            ],
            env=_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            return f"cannot create user {QEMU_USER}: {r.stderr.strip()}"
    return None


def ensure_kvm_access() -> str | None:
    """Give the QEMU user /dev/kvm the way Debian's udev rule does (root:kvm 0660 + group).

    Why: libvirt probes QEMU's capabilities as root (who can open /dev/kvm) but validates
    its cache with the QEMU user's access.  If they disagree, every define/start re-probes
    QEMU - about 45 s each here.  Without /dev/kvm there is nothing to do (TCG only).
    """
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return None
    try:
        gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        r = subprocess.run(
            ["/usr/sbin/groupadd", "--system", "kvm"],
            env=_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            return f"cannot create group kvm: {r.stderr.strip()}"
        gid = grp.getgrnam("kvm").gr_gid
    st = kvm.stat()
    if st.st_gid != gid or (st.st_mode & 0o060) != 0o060:
        os.chown(kvm, 0, gid)
        os.chmod(kvm, 0o660)
    if QEMU_USER not in grp.getgrgid(gid).gr_mem:
        r = subprocess.run(
            ["/usr/sbin/usermod", "--append", "--groups", "kvm", QEMU_USER],
            env=_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            return f"cannot add {QEMU_USER} to group kvm: {r.stderr.strip()}"
    return None


def _ensure_dirs() -> None:
    for path, mode in (
        (LOG_DIR, 0o700),
        (LOG_DIR / "qemu", 0o700),
        (RUN_DIR, 0o755),
        (Path("/var/lib/libvirt"), 0o755),
        (Path("/var/lib/libvirt/qemu"), 0o751),
        (Path("/var/cache/libvirt"), 0o755),
        (Path("/var/cache/libvirt/qemu"), 0o750),
    ):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)


def _start(prog: Path, sock: Path, pidfile: Path, log: Path, timeout: float):
    """Start ``prog -d``; (pid, None) on success, (None, reason) on failure."""
    env = dict(_ENV, LIBVIRT_LOG_OUTPUTS=f"3:file:{log}")
    try:
        r = subprocess.run(
            [str(prog), "-d"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, f"{prog} -d did not return within {timeout:.0f}s"
    if r.returncode != 0:
        detail = (r.stderr or r.stdout).strip() or _tail(log)
        return None, f"{prog} -d failed (exit {r.returncode}): {detail}"
    if not _wait_for(sock, timeout):
        return None, f"{prog} started but {sock} never answered; log {log}:\n{_tail(log)}"
    return _read_pid(pidfile), None


def _check_qemu(uri: str) -> str | None:
    """None if uri accepts connections and offers x86_64 TCG guests, else why not."""
    try:
        import libvirt
    except ImportError:
        return "the libvirt Python bindings (libvirt-python) are not installed"
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return f"libvirtd is running but {uri} refused the connection: {exc}"
    try:
        caps = conn.getCapabilities()
    except libvirt.libvirtError as exc:
        return f"cannot read {uri} capabilities: {exc}"
    finally:
        conn.close()
    if "<arch name='x86_64'>" not in caps or "<domain type='qemu'" not in caps:
        return (
            f"{uri} offers no x86_64 guests of type 'qemu' (TCG): is qemu-system-x86 "
            f"installed at {QEMU}?"
        )
    return None


def ensure_libvirtd(timeout: float = 30.0) -> LibvirtdStatus:
    """Make qemu:///system usable, starting virtlogd and libvirtd if needed (needs root)."""
    if os.geteuid() == 0 and _answers(LIBVIRT_SOCK):
        why = ensure_kvm_access()
        if why:
            return LibvirtdStatus(ok=False, reason=why)
    if _answers(LIBVIRT_SOCK):
        why = _check_qemu(SYSTEM_URI)
        return LibvirtdStatus(ok=why is None, reason=why or "")
    if os.geteuid() != 0:
        return LibvirtdStatus(
            ok=False,
            reason="libvirtd is not running and starting it (and using qemu:///system) "
            "needs root: run the integration tests as root",
        )
    missing = [str(p) for p in (LIBVIRTD, VIRTLOGD, QEMU) if not p.exists()]
    if missing:
        return LibvirtdStatus(
            ok=False,
            reason=f"missing {', '.join(missing)}: install the Debian packages {PACKAGES}",
        )
    why = ensure_qemu_user() or ensure_kvm_access()
    if why:
        return LibvirtdStatus(ok=False, reason=why)
    _ensure_dirs()
    status = LibvirtdStatus(ok=False)
    if not _answers(VIRTLOGD_SOCK):
        pid, why = _start(VIRTLOGD, VIRTLOGD_SOCK, VIRTLOGD_PID, LOG_DIR / "virtlogd.log", timeout)
        if why:
            status.reason = why
            return status
        if pid:
            status.started.append(("virtlogd", pid))
    pid, why = _start(LIBVIRTD, LIBVIRT_SOCK, LIBVIRTD_PID, status.log, timeout)
    if why:
        status.stop()
        status.reason = why
        return status
    if pid:
        status.started.append(("libvirtd", pid))
    why = _check_qemu(SYSTEM_URI)
    if why:
        status.stop()
        status.reason = why
        return status
    status.ok = True
    return status


def qemu_processes(domain_name: str) -> list[int]:
    """Pids of QEMU processes running the named guest (from /proc, no ps needed)."""
    pids = []
    needle = f"guest={domain_name},".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        args = cmdline.split(b"\x00")
        if (
            args
            and args[0].endswith(b"qemu-system-x86_64")
            and any(a.startswith(needle) or a == needle.rstrip(b",") for a in args)
        ):
            pids.append(int(entry.name))
    return pids


def tiny_guest_xml(name: str) -> str:
    """A 32 MiB x86_64 TCG guest with no disk: SeaBIOS runs, finds nothing to boot, waits.

    Serial console on a pty (for open_console), ACPI (PCI hotplug on i440fx needs it), no
    graphics, no video, no USB, no balloon, no network: nothing on the host it could touch.
    """
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <currentMemory unit='MiB'>32</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


def remove_guests(backend, names) -> None:
    """Destroy (when running) and undefine each of ``names`` through a secured-virt backend,
    passing over any already gone: a test's clean-up, which must not fail over a guest the
    test itself removed."""
    for vm in names:
        with contextlib.suppress(Exception):  # gone already, or never defined: nothing to do
            if backend.lookup(vm).id is not None:
                backend.destroy(vm)
            backend.undefine(vm)
