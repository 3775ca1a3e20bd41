"""Over a connection to libvirtd, a listing asks its rows (info, then metadata) from the
backend's row threads, so the round trips overlap (LibvirtBackend.each); the rows are the
ones asked one after the other would give, in virsh's order, and a domain gone while its row
is asked is left out.  In-process (test:///) nothing changes.  Real libvirtd, its test
driver (test+unix:///default)."""

from __future__ import annotations

import threading
import uuid

import libvirt
import pytest

from secured_virt.backends import libvirt_backend as lb
from secured_virt.confinement import vmmeta

URI = "test+unix:///default"
NAMES = [f"svt-rows-{i:02d}" for i in range(12)]

_XML = """<domain type="test">
  <name>{name}</name><uuid>{uuid}</uuid>
  <metadata><svirt:vm xmlns:svirt="{ns}"><svirt:owner>{owner}</svirt:owner></svirt:vm></metadata>
  <memory unit="MiB">64</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type></os>
</domain>"""


@pytest.fixture
def remote(libvirtd):
    conn = libvirt.open(URI)

    def clear():
        for n in NAMES:
            try:
                dom = conn.lookupByName(n)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefine()

    clear()
    for i, n in enumerate(NAMES):
        dom = conn.defineXML(
            _XML.format(name=n, uuid=uuid.uuid5(uuid.NAMESPACE_DNS, n), ns=vmmeta.NS, owner=f"u{i}")
        )
        if i % 3 == 0:
            dom.create()
    backend = lb.LibvirtBackend(URI)
    try:
        yield backend
    finally:
        backend.close()
        clear()
        conn.close()


def _ours(listing) -> list[dict]:
    """Our domains' rows, without the CPU time (the test driver's is the clock's)."""
    rows = [d.as_dict() for d in listing.domains if d.name in NAMES]
    return [{k: v for k, v in r.items() if k != "cpu_time_ns"} for r in rows]


def test_rows_over_libvirtd_come_from_the_row_threads_and_match_one_by_one(remote, monkeypatch):
    threads = set()
    real_info = lb.LibvirtBackend._info

    def info(self, dom, **kw):
        threads.add(threading.current_thread().name)
        return real_info(self, dom, **kw)

    monkeypatch.setattr(lb.LibvirtBackend, "_info", info)
    assert remote.overlaps(len(NAMES))
    together = remote.listing(include_inactive=True)
    assert any(t.startswith("svirt-rows") for t in threads), threads

    monkeypatch.setattr(lb, "PARALLEL_FROM", 10**9)  # the same listing, one row after another
    threads.clear()
    one_by_one = remote.listing(include_inactive=True)
    assert not any(t.startswith("svirt-rows") for t in threads)
    assert _ours(together) == _ours(one_by_one)
    assert len(_ours(together)) == len(NAMES)
    running = [d["name"] for d in _ours(together) if d["id"] is not None]
    assert running == [n for i, n in enumerate(NAMES) if i % 3 == 0]  # by id: started in order


def test_a_domain_gone_while_its_row_is_asked_is_left_out(remote, monkeypatch):
    real_info = lb.LibvirtBackend._info
    victim = NAMES[5]

    def info(self, dom, **kw):
        if dom.name() == victim:
            dom.undefine()  # somebody removed it between the listing and its row
        return real_info(self, dom, **kw)

    monkeypatch.setattr(lb.LibvirtBackend, "_info", info)
    listed = [d["name"] for d in _ours(remote.listing(include_inactive=True))]
    assert victim not in listed and len(listed) == len(NAMES) - 1


def test_each_rows_metadata_is_read_at_once_and_is_its_own(remote):
    listing = remote.listing(include_inactive=True)
    names = [d.name for d in listing.domains if d.name in NAMES]
    listing.prefetch_metadata(names, vmmeta.NS)
    assert all((n, vmmeta.NS) in listing._meta for n in names)  # read, by the row threads
    for n in names:
        owner = vmmeta.parse(listing.metadata(n, vmmeta.NS)).owner
        assert owner == f"u{NAMES.index(n)}"


def test_in_process_rows_stay_one_after_another(lv):
    """The in-process test driver: a call is a function call, threads would only add."""
    assert not lv.overlaps(1000)
