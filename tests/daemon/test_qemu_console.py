"""`svirsh console` through svirtd on a real QEMU guest (system libvirtd, TCG, no disk).

The guest's firmware (SeaBIOS with ``useserial``) writes to the serial console and, finding
nothing to boot, reboots every second - so there is always fresh output to relay.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
from svtd_helpers import RealEnv, console_proc, read_until, wait_log, write_root_file

pytestmark = pytest.mark.integration


def guest_xml(name: str) -> str:
    from secured_virt.testing.libvirtd import tiny_guest_xml

    return tiny_guest_xml(name).replace(
        "<boot dev='hd'/>", "<boot dev='hd'/>\n    <bios useserial='yes' rebootTimeout='1000'/>"
    )


@pytest.fixture
def qemu_guest():
    from secured_virt.testing.libvirtd import ensure_libvirtd

    status = ensure_libvirtd()
    if not status.ok:
        pytest.skip(status.reason)
    import libvirt

    name = f"svt-daemon-con-{os.getpid()}"
    conn = libvirt.open(status.uri)
    dom = conn.createXML(guest_xml(name), 0)
    yield status.uri, name
    with contextlib.suppress(libvirt.libvirtError):
        dom.destroy()
    conn.close()


@pytest.fixture
def env(qemu_guest):
    uri, name = qemu_guest
    e = RealEnv(uri=uri)
    pa = e.pa.read_text()
    pa = pa.replace('<VM name="alice-db"/>', f'<VM name="alice-db"/>\n      <VM name="{name}"/>', 1)
    pa = pa.replace('<operation id="2"/>', '<operation id="2"/><operation id="19"/>', 1)
    write_root_file(e.pa, pa)
    e.d = e.daemon().start().wait_ready()
    e.vm = name
    yield e
    e.d.stop()
    e.cleanup()


def test_console_of_a_real_guest_through_svirtd(env, test_users, readable_src):
    alice = test_users["svt-alice"]
    p = console_proc(alice, readable_src, env.socket, env.vm)
    out = read_until(p, b"SeaBIOS", timeout=30)
    assert out.startswith(f"Connected to domain '{env.vm}'\nEscape character is ^]\n".encode())
    p.stdin.write(b"\x1d")  # Ctrl-]
    p.stdin.flush()
    assert p.wait(15) == 0
    wait_log(env.d, f"console on '{env.vm}' closed")
    # the console was released: the next session gets it again
    p = console_proc(alice, readable_src, env.socket, env.vm)
    read_until(p, b"Booting", timeout=30)
    p.kill()
    p.wait()
    t0 = time.monotonic()
    while env.d.log().count(f"console on '{env.vm}' closed") < 2:
        assert time.monotonic() - t0 < 15, env.d.log()
        time.sleep(0.05)
    audit = [r for r in env.audit_records() if r["type"] == "decision" and r["op"] == "console"]
    assert [r["user"] for r in audit] == ["svt-alice", "svt-alice"]
    assert all(r["verdict"] == "allowed" for r in audit)


def test_console_refused_for_a_user_without_the_right(env, test_users, readable_src):
    p = console_proc(test_users["svt-bob"], readable_src, env.socket, env.vm)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 3
    assert b"denied" in err and env.vm.encode() in err
    assert b"Connected" not in out
