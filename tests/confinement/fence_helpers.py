"""Shared by the fence tests of issue 14 items 2, 3, 4, 13, 16 and 17 (test_fence_*.py): a
Service on the libvirt test driver (tests/frontend/conftest.py's root-owned configuration,
imported rather than copied), identities of real test users, qcow2 images built by qemu-img
or by hand, and a scratch loop device as the "host block device"."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from secured_virt.requests import Request
from secured_virt.service import Service

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "frontend_conftest_for_fence", HERE.parent / "frontend" / "conftest.py"
)
frontend = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(frontend)

#: pytest fixture (re-exported into the test modules that import it)
svt_env = frontend.svt_env
ROOT = frontend.ROOT
ident = frontend.ident
write_root_file = frontend.write_root_file

QEMU_IMG = shutil.which("qemu-img")
LOSETUP = shutil.which("losetup")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img (qemu-utils) missing")


def service(cfg, ua: str, pa: str, **changes) -> Service:
    """A Service over ``cfg`` with these UA/PA texts (root-owned files) and config changes."""
    write_root_file(Path(cfg.ua), ua)
    write_root_file(Path(cfg.pa), pa)
    cfg = dataclasses.replace(cfg, **changes)
    svc = Service.from_config(cfg)
    svc.cfg_for_test = cfg
    return svc


def run(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


def audit_records(svc) -> list[dict]:
    try:
        with open(svc.cfg_for_test.audit_log) as fh:
            return [json.loads(line) for line in fh]
    except FileNotFoundError:
        return []


def domain_xml(name: str, disks: str = "", extra: str = "", dtype: str = "test") -> str:
    return (
        f"<domain type='{dtype}'><name>{name}</name><memory>1024</memory>"
        f"<os><type>hvm</type></os><devices>{disks}{extra}</devices></domain>"
    )


def file_disk(path, target="vda", fmt=None) -> str:
    drv = f"<driver name='qemu' type='{fmt}'/>" if fmt else ""
    return (
        f"<disk type='file' device='disk'>{drv}<source file='{path}'/>"
        f"<target dev='{target}'/></disk>"
    )


def qcow2(path, *options: str, backing=None, backing_fmt="raw", size="1M") -> Path:
    argv = [QEMU_IMG, "create", "-q", "-f", "qcow2"]
    for opt in options:
        argv += ["-o", opt]
    if backing:
        argv += ["-u", "-b", str(backing), "-F", backing_fmt]
    subprocess.run([*argv, str(path), size], check=True)
    return Path(path)


def qcow2_header(
    path,
    *,
    version=3,
    incompatible=0,
    backing: bytes = b"",
    backing_fmt: bytes | None = None,
    extensions: list[tuple[int, bytes]] = (),
) -> Path:
    """A qcow2 header written by hand (what a guest can write into its own raw disk),
    with the bits and extensions qemu-img will not set."""
    exts = b""
    if backing_fmt is not None:
        extensions = [(0xE2792ACA, backing_fmt), *extensions]
    for magic, data in extensions:
        exts += struct.pack(">II", magic, len(data)) + data.ljust((len(data) + 7) & ~7, b"\0")
    exts += struct.pack(">II", 0, 0)
    header_len = 72 if version == 2 else 112
    offset = header_len + len(exts) if backing else 0
    head = b"QFI\xfb" + struct.pack(">IQII", version, offset, len(backing), 16)
    head += struct.pack(">QIIQQIIQ", 1 << 20, 0, 1, 0x30000, 0x10000, 1, 0, 0)
    if version == 3:
        head += struct.pack(">QQQII", incompatible, 0, 0, 4, header_len)
        head = head.ljust(header_len, b"\0")
    Path(path).write_bytes(head + exts + backing)
    return Path(path)


def qemu_guest(name: str, disk: str) -> str:
    """A tiny real guest (secured_virt.testing.libvirtd) with ``disk`` as its disk."""
    from secured_virt.testing.libvirtd import tiny_guest_xml

    return tiny_guest_xml(name).replace("<memballoon", disk + "<memballoon")


def qemu_opened(name: str) -> set[str]:
    """The files guest ``name``'s QEMU process holds open: what it really reached."""
    from secured_virt.testing.libvirtd import qemu_processes

    opened = set()
    for pid in qemu_processes(name):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                opened.add(os.readlink(fd))
    return opened


def forget_guests(conn, names) -> None:
    """Stop and undefine whichever of ``names`` the test left on ``conn`` (a test's cleanup:
    a guest it never defined is no error)."""
    import libvirt

    for n in names:
        try:
            d = conn.lookupByName(n)
            if d.isActive():
                d.destroy()
            d.undefine()
        except libvirt.libvirtError:
            pass


class LoopDevice:
    """A loop device (losetup) over a scratch file holding ``marker``: a real host block
    device nobody minds a guest reaching."""

    def __init__(self, backing: Path, marker: bytes):
        if os.geteuid() != 0 or LOSETUP is None:
            pytest.skip("a loop device needs root and losetup")
        backing.write_bytes(marker.ljust(1 << 20, b"\0"))
        r = subprocess.run([LOSETUP, "-f", "--show", str(backing)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"no loop device available here: {r.stderr.strip()}")
        self.dev = r.stdout.strip()

    def close(self) -> None:
        subprocess.run([LOSETUP, "-d", self.dev], check=False)
