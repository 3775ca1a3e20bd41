"""Fixtures for backend tests: test-driver connections on the demo node, a real libvirtd."""

from __future__ import annotations

import time
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
