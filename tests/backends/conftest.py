"""Fixtures for backend tests: test-driver connections on the demo node, a real libvirtd."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_NODE = REPO / "etc" / "demo" / "node.xml"
DEMO_URI = f"test://{DEMO_NODE}"
XL_DATA = REPO / "tests" / "data" / "xl"
SVIRT_NS = "https://secured-virt.org/xmlns/svirt/1"


def wait_until(pred, timeout: float = 10.0) -> bool:
    """Whether ``pred()`` holds, polled until it does or ``timeout`` seconds passed: what a
    hypervisor or an event does is seen only by asking again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture
def lv():
    """A fresh LibvirtBackend on the demo node (each open of a node file is a new state)."""
    from secured_virt.backends.libvirt_backend import LibvirtBackend

    backend = LibvirtBackend(DEMO_URI, migrate_poll_interval=0.05)
    yield backend
    backend.close()


@pytest.fixture
def no_stderr(capfd):
    """Fails the test if anything (libvirt's default error printer, libxml2) wrote to fd 2."""
    yield
    err = capfd.readouterr().err
    assert err == "", f"unexpected output on stderr: {err!r}"


@pytest.fixture(scope="session")
def libvirtd():
    """A running system libvirtd + virtlogd (started here as root if needed); see testing."""
    from secured_virt.testing.libvirtd import ensure_libvirtd

    status = ensure_libvirtd()
    if not status.ok:
        pytest.skip(status.reason)
    yield status
    status.stop()


_TEST_DOMAIN = """<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
  <name>{name}</name><uuid>{uuid}</uuid>
  <metadata><svirt:vm xmlns:svirt="{ns}"><svirt:owner>{owner}</svirt:owner></svirt:vm></metadata>
  <memory unit="MiB">64</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type></os>
  <test:runstate>5</test:runstate>
</domain>"""


def domain_xml(name: str, owner: str) -> str:
    """A shut-off test-driver domain owned by ``owner``; its UUID follows from its name."""
    return _TEST_DOMAIN.format(
        name=name, uuid=uuid.uuid5(uuid.NAMESPACE_DNS, name), ns=SVIRT_NS, owner=owner
    )


def remove_domains(conn, *names: str) -> None:
    """Stop (if running) and undefine the domains ``names`` a test defined through ``conn``
    (a client of the host's libvirtd): what a test leaves behind, or a failed run left."""
    for dom in conn.listAllDomains(0):
        if dom.name() in names:
            if dom.isActive():
                dom.destroy()
            dom.undefine()


@pytest.fixture
def node(tmp_path):
    """A test-driver node file of three shut-off domains, vm0..vm2, owned by alice."""
    path = tmp_path / "node.xml"
    doms = "".join(domain_xml(f"vm{i}", "alice") for i in range(3))
    path.write_text(f"<node>{doms}</node>")
    return f"test://{path}"


@pytest.fixture
def watching(node):
    """A backend on ``node`` that follows libvirt's events, as svirtd's does."""
    from secured_virt.backends.libvirt_backend import LibvirtBackend

    backend = LibvirtBackend(node, watch_events=True)
    yield backend
    backend.close()
