"""svirtd's backend keeps each domain's metadata for listings until libvirt's events say the
domain changed (backends.libvirt_events).  Real libvirt: the test driver in this process, and
a second, independent client of the host's libvirtd (its test and QEMU drivers) for changes
made outside svirtd, as root's virsh would make them."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from secured_virt.backends import libvirt_events, metadata
from secured_virt.backends.libvirt_backend import LibvirtBackend
from secured_virt.confinement import vmmeta
from secured_virt.testing.libvirtd import tiny_guest_xml

from .conftest import domain_xml as _domain_xml
from .conftest import remove_domains, wait_until

NS = vmmeta.NS


def _owner(backend, name: str) -> str | None:
    """The owner a fresh listing shows for ``name``."""
    listing = backend.listing(include_inactive=True)
    return vmmeta.parse(listing.metadata(name, NS)).owner


def _set_owner_outside(conn: libvirt.virConnect, name: str, owner: str) -> None:
    """Change the owner as another client would: the raw connection, not the backend (so
    nothing but libvirt's event can tell the backend)."""
    frag = metadata.to_libvirt(
        f"<svirt:vm xmlns:svirt='{NS}'><svirt:owner>{owner}</svirt:owner></svirt:vm>", NS
    )  # as libvirt takes it: the elements without their namespace
    dom = conn.lookupByName(name)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (
        libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    )
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, frag, vmmeta.KEY, NS, flags)


def test_kept_values_serve_later_listings_without_asking_libvirt(watching):
    cache = watching.metadata_cache
    assert cache.live
    assert [_owner(watching, f"vm{i}") for i in range(3)] == ["alice"] * 3
    reads = cache.reads
    for _ in range(3):
        assert _owner(watching, "vm1") == "alice"
    assert cache.reads == reads  # asked of the kept values, not of libvirt


def test_a_streamed_listing_keeps_each_rows_metadata_once_its_row_is_asked(watching):
    """The Xen-API's get_all_records streams its rows (listing_by_name): a row's metadata
    read after its row (info) is kept like a listing's."""

    def rows():
        listing = watching.listing_by_name(include_inactive=True)
        out = []
        for d in listing.domains:
            listing.info(d.name)
            out.append(vmmeta.parse(listing.metadata(d.name, NS)).owner)
        return out

    assert rows() == ["alice"] * 3
    reads = watching.metadata_cache.reads
    assert rows() == ["alice"] * 3
    assert watching.metadata_cache.reads == reads


def test_a_change_made_outside_the_backend_is_shown_once_its_event_arrives(watching):
    assert _owner(watching, "vm1") == "alice"
    events = watching.metadata_cache.events
    _set_owner_outside(watching.connection, "vm1", "mallory")
    assert wait_until(lambda: watching.metadata_cache.events > events)
    assert _owner(watching, "vm1") == "mallory"
    assert _owner(watching, "vm0") == "alice"  # the others are still the kept ones


def test_a_redefinition_outside_the_backend_is_shown_once_its_event_arrives(watching):
    assert _owner(watching, "vm2") == "alice"
    events = watching.metadata_cache.events
    watching.connection.defineXML(_domain_xml("vm2", "bob"))  # same UUID, another owner
    assert wait_until(lambda: watching.metadata_cache.events > events)
    assert _owner(watching, "vm2") == "bob"


def test_a_start_and_a_stop_forget_the_domain(watching):
    """A start or a stop may swap the live definition for the persistent one: its metadata
    is read again afterwards, whether svirtd or someone else started it."""
    assert _owner(watching, "vm0") == "alice"
    reads = watching.metadata_cache.reads
    watching.start("vm0")
    assert _owner(watching, "vm0") == "alice"
    assert watching.metadata_cache.reads == reads + 1


def test_the_backends_own_changes_are_forgotten_before_the_call_returns(watching, monkeypatch):
    """A user's next request must not wait for the event of their own change: set_metadata,
    define and undefine forget the domain on the calling thread."""
    assert _owner(watching, "vm1") == "alice"
    forgotten = []
    real = watching.metadata_cache.forget
    monkeypatch.setattr(
        watching.metadata_cache,
        "forget",
        lambda u: (forgotten.append((u, __import__("threading").current_thread().name)), real(u)),
    )
    vm1 = str(uuid.uuid5(uuid.NAMESPACE_DNS, "vm1"))
    frag = f"<svirt:vm xmlns:svirt='{NS}'><svirt:owner>carol</svirt:owner></svirt:vm>"
    watching.set_metadata("vm1", frag, "svirt", NS)
    assert (vm1, "MainThread") in forgotten
    assert _owner(watching, "vm1") == "carol"
    forgotten.clear()
    watching.define(_domain_xml("vm1", "dave"))
    assert (vm1, "MainThread") in forgotten
    assert _owner(watching, "vm1") == "dave"


def test_without_watching_every_listing_asks_libvirt(node):
    backend = LibvirtBackend(node)
    try:
        assert not backend.metadata_cache.live
        assert _owner(backend, "vm1") == "alice"
        _set_owner_outside(backend.connection, "vm1", "mallory")
        assert _owner(backend, "vm1") == "mallory"  # at once: nothing was kept
    finally:
        backend.close()


def test_closing_forgets_everything_and_keeps_nothing_more(watching):
    assert _owner(watching, "vm1") == "alice"
    cache = watching.metadata_cache
    watching.close()
    assert not cache.live and cache.account()["kept"] == 0
    assert cache.get("u", NS, lambda: "read") == "read"
    assert cache.account()["kept"] == 0


def test_a_read_that_raced_an_event_is_not_kept():
    cache = libvirt_events.MetadataCache()
    cache.live = True  # the generations alone, as after watch()

    def read_while_the_domain_changes():
        cache.forget("u1")  # the event of a change made while we read
        return "old"

    assert cache.get("u1", NS, read_while_the_domain_changes) == "old"
    assert cache.get("u1", NS, lambda: "new") == "new"  # the old value was not kept
    assert cache.get("u1", NS, lambda: "never asked") == "new"


def test_an_event_for_an_unknown_domain_forgets_every_domain_and_every_read_under_way():
    cache = libvirt_events.MetadataCache()
    cache.live = True
    assert cache.get("u1", NS, lambda: "a") == "a"

    class Gone:
        def UUIDString(self):
            raise libvirt.libvirtError("gone")

    def read_during_it():
        cache._on_event(None, Gone())
        return "stale"

    assert cache.get("u2", NS, read_during_it) == "stale"
    assert cache.get("u2", NS, lambda: "fresh") == "fresh"
    assert cache.get("u1", NS, lambda: "b") == "b"


def test_a_value_is_kept_at_most_max_age_without_events():
    now = [1000.0]
    cache = libvirt_events.MetadataCache(clock=lambda: now[0])
    cache.live = True
    assert cache.get("u1", NS, lambda: "a") == "a"
    now[0] += libvirt_events.MAX_AGE - 0.5
    assert cache.get("u1", NS, lambda: "b") == "a"
    now[0] += 1.0
    assert cache.get("u1", NS, lambda: "b") == "b"


def test_a_driver_not_known_to_announce_changes_is_not_watched(node):
    backend = LibvirtBackend(node)
    try:
        assert libvirt_events.ensure_event_loop()
        assert not libvirt_events.MetadataCache().watch(backend.connection, "xen")
    finally:
        backend.close()


@pytest.mark.integration
@pytest.mark.parametrize("driver", ["test", "qemu"])
def test_another_clients_change_through_libvirtd_reaches_the_listing(libvirtd, driver):
    """The case the cache exists for: svirtd's connection to libvirtd, and a change made by
    another client of the same libvirtd (root's virsh): its event crosses the socket."""
    uri = "test+unix:///default" if driver == "test" else libvirtd.uri
    name = f"svt-metacache-{driver}"
    xml = _domain_xml(name, "alice") if driver == "test" else tiny_guest_xml(name)
    other = libvirt.open(uri)
    try:
        remove_domains(other, name)
        other.defineXML(xml)
        _set_owner_outside(other, name, "alice")
        watching = LibvirtBackend(uri, watch_events=True)
        try:
            assert wait_until(lambda: watching.metadata_cache.live)  # the helper is ready
            assert _owner(watching, name) == "alice"
            events = watching.metadata_cache.events
            _set_owner_outside(other, name, "mallory")
            assert wait_until(lambda: watching.metadata_cache.events > events)
            assert _owner(watching, name) == "mallory"
        finally:
            watching.close()
    finally:
        remove_domains(other, name)
        other.close()


@pytest.mark.integration
def test_a_daemons_events_come_from_a_helper_and_its_end_stops_the_keeping(libvirtd):
    """Over a connection to libvirtd the events come from a helper process (libvirt_watch):
    svirtd's own connection is not watched by an event loop.  A helper that dies (killed,
    libvirtd gone) leaves nothing kept: every listing asks libvirt again."""
    import signal

    name = "svt-metacache-helper"
    other = libvirt.open("test+unix:///default")
    try:
        remove_domains(other, name)
        other.defineXML(_domain_xml(name, "alice"))
        watching = LibvirtBackend("test+unix:///default", watch_events=True)
        cache = watching.metadata_cache
        helper = cache._helper
        try:
            assert wait_until(lambda: cache.live)  # the helper is ready
            assert helper is not None and helper.poll() is None
            assert _owner(watching, name) == "alice"
            helper.send_signal(signal.SIGKILL)
            assert wait_until(lambda: not cache.live)
            # svirtd reaps it and closes its end of the pipe (no zombie, no fd left per helper;
            # returncode, not poll(): the test must not reap it itself)
            assert wait_until(lambda: helper.returncode == -signal.SIGKILL and helper.stdout.closed)
            assert cache.account()["kept"] == 0
            _set_owner_outside(other, name, "mallory")  # no event can reach us now
            assert _owner(watching, name) == "mallory"
        finally:
            watching.close()
        assert helper.poll() is not None
        watching = LibvirtBackend("test+unix:///default", watch_events=True)
        helper = watching.metadata_cache._helper
        watching.close()  # the helper ends with the backend
        assert helper.poll() is not None
    finally:
        remove_domains(other, name)
        other.close()


@pytest.mark.integration
def test_the_helper_never_outlives_its_reader(libvirtd):
    """svirtd killed with -9 closes the helper's stdin: the helper ends by itself (status 0,
    not killed), and a helper that cannot connect says why and exits 1."""
    import subprocess
    import sys
    from pathlib import Path

    from secured_virt.backends import libvirt_watch

    root = str(Path(libvirt_watch.__file__).resolve().parents[2])
    argv = [sys.executable, "-I", "-c", libvirt_watch.BOOT, root]
    proc = subprocess.Popen(
        [*argv, "test+unix:///default"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout.readline() == b"ready\n"
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()
    bad = subprocess.run(
        [*argv, "test+unix:///default?socket=/nonexistent/sock"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 1 and bad.stdout.startswith(b"error: "), bad


@pytest.mark.integration
@pytest.mark.parametrize(
    "boot",
    [
        "import sys; print('error: refused', flush=True); sys.exit(1)",  # says why, exits
        "import time; time.sleep(60)",  # says nothing: given up after the timeout
    ],
)
def test_a_helper_that_does_not_start_leaves_nothing_kept(libvirtd, monkeypatch, boot):
    """Until the helper says it follows the events nothing may be kept: a change made then
    would have no event to forget it.  One that fails or hangs is ended, and every listing
    reads libvirt."""
    from secured_virt.backends import libvirt_watch

    monkeypatch.setattr(libvirt_watch, "BOOT", boot)
    monkeypatch.setattr(libvirt_events, "HELPER_START_TIMEOUT", 0.5)
    watching = LibvirtBackend("test+unix:///default", watch_events=True)
    cache = watching.metadata_cache
    try:
        helper = cache._helper
        assert helper is not None
        assert wait_until(lambda: helper.poll() is not None)  # ended, not left behind
        assert not cache.live and cache._helper is None
        assert wait_until(lambda: helper.stdout.closed)
        name = watching.listing(include_inactive=True).domains[0].name
        watching.listing(include_inactive=True).metadata(name, NS)
        assert cache.account()["kept"] == 0
    finally:
        watching.close()


@pytest.mark.integration
def test_kept_values_are_not_prefetched_by_the_row_threads(libvirtd, monkeypatch):
    """Over libvirtd a listing prefetches its rows' metadata from the row threads so the round
    trips overlap; a kept value has no round trip, and handing it to a thread would only cost
    a hand-off of the interpreter lock."""
    names = [f"svt-metacache-pf{i}" for i in range(10)]
    other = libvirt.open("test+unix:///default")

    remove_domains(other, *names)
    for n in names:
        other.defineXML(_domain_xml(n, "alice"))
    watching = LibvirtBackend("test+unix:///default", watch_events=True)
    try:
        assert wait_until(lambda: watching.metadata_cache.live)
        handed: list[list] = []
        real_each = watching.each

        def each(fn, items):
            handed.append(list(items))
            return real_each(fn, items)

        monkeypatch.setattr(watching, "each", each)
        first = watching.listing(include_inactive=True)
        handed.clear()
        first.prefetch_metadata(names, NS)
        assert len(handed[-1]) == len(names)  # nothing kept yet: all to the row threads
        second = watching.listing(include_inactive=True)
        handed.clear()
        second.prefetch_metadata(names, NS)
        assert handed[-1] == []  # all kept
        assert vmmeta.parse(second.metadata(names[3], NS)).owner == "alice"
    finally:
        watching.close()
        remove_domains(other, *names)
        other.close()
