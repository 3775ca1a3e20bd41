"""svirtd's ``list`` rows are kept between listings until libvirt's events say a domain changed
(backends.libvirt_rows).  Real libvirt: the test driver in this process (the raw connection
stands for another client: only libvirt's event can tell the backend of its changes), and the
host's libvirtd with a second, independent client, as root's virsh would be."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from secured_virt.backends import libvirt_events, libvirt_rows
from secured_virt.backends.libvirt_backend import LibvirtBackend
from secured_virt.testing.libvirtd import tiny_guest_xml

from .conftest import domain_xml, remove_domains, wait_until


def _rows(backend, *, inactive: bool = True) -> dict:
    """name -> row of what ``list`` would show now."""
    return {d.name: d for d in backend.kept_listing(include_inactive=inactive).domains}


def _state(backend, name: str) -> str | None:
    """The state ``list`` shows for ``name`` (None: not listed)."""
    row = _rows(backend).get(name)
    return row.state if row is not None else None


def _uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name))


def _after_an_event(backend, name: str, change, *, own: bool = False) -> None:
    """``change()`` of domain ``name`` (a test-driver domain of this module), made as another
    client would, then wait until libvirt's event for that domain has been handled: not any
    event, since one of an earlier change of another domain may still be on its way.
    ``own``: the change is the backend's, which forgets the domain once itself first."""
    generations = backend.metadata_cache._generations
    uuid = _uuid(name)
    before = generations.get(uuid, 0) + (1 if own else 0)
    change()
    assert wait_until(lambda: generations.get(uuid, 0) > before)


@pytest.fixture
def counted(watching, monkeypatch):
    """``watching``, counting the full listings it makes and its listAllDomains calls."""
    calls = {"full": 0, "listAll": 0}
    full = watching._listing_now

    def listing_now(inactive):
        calls["full"] += 1
        return full(inactive)

    monkeypatch.setattr(watching, "_listing_now", listing_now)
    conn = watching.connection
    list_all = conn.listAllDomains

    def list_all_counted(flags=0):
        calls["listAll"] += 1
        return list_all(flags)

    monkeypatch.setattr(conn, "listAllDomains", list_all_counted)
    return watching, calls


def test_a_later_listing_asks_libvirt_only_for_the_autostart_flags(counted):
    backend, calls = counted
    first = _rows(backend)
    assert sorted(first) == ["vm0", "vm1", "vm2"] and calls["full"] == 1
    asked, before = backend.kept_rows.asked, dict(calls)
    for _ in range(3):
        assert _rows(backend) == first
    assert calls["full"] == before["full"]  # no listing of every domain again
    assert calls["listAll"] == before["listAll"] + 3  # one a listing: the autostarted ones
    assert backend.kept_rows.asked == asked  # and no row asked again


def test_the_backends_own_changes_show_in_the_next_listing(watching, monkeypatch):
    """A user's next ``list`` never waits for the event of their own change: start, suspend,
    resume, destroy and a size change forget the domain on the calling thread."""
    monkeypatch.setattr(watching.metadata_cache, "_heard", lambda uuid: None)  # no event helps
    _rows(watching)
    watching.start("vm0")
    assert _rows(watching)["vm0"].state == "running" and _rows(watching)["vm0"].id is not None
    watching.suspend("vm0")
    assert _rows(watching)["vm0"].state == "paused"
    watching.resume("vm0")
    assert _rows(watching)["vm0"].state == "running"
    watching.destroy("vm0")
    assert _rows(watching)["vm0"].state == "shut off" and _rows(watching)["vm0"].id is None
    watching.setmaxmem("vm1", 32768)
    assert _rows(watching)["vm1"].max_mem_kib == 32768


def test_a_start_outside_the_backend_shows_once_its_event_arrives(watching):
    _rows(watching)
    _after_an_event(watching, "vm2", lambda: watching.connection.lookupByName("vm2").create())
    assert _rows(watching)["vm2"].state == "running"
    _after_an_event(watching, "vm2", lambda: watching.connection.lookupByName("vm2").suspend())
    assert _rows(watching)["vm2"].state == "paused"


def test_a_domain_defined_outside_joins_and_one_undefined_outside_leaves(watching):
    assert "vm7" not in _rows(watching)
    _after_an_event(
        watching, "vm7", lambda: watching.connection.defineXML(domain_xml("vm7", "bob"))
    )
    assert _rows(watching)["vm7"].uuid == _uuid("vm7")
    _after_an_event(watching, "vm1", lambda: watching.connection.lookupByName("vm1").undefine())
    assert sorted(_rows(watching)) == ["vm0", "vm2", "vm7"]


def test_a_domain_renamed_outside_shows_its_new_name(watching):
    _rows(watching)
    _after_an_event(
        watching, "vm1", lambda: watching.connection.lookupByName("vm1").rename("web", 0)
    )
    rows = _rows(watching)
    assert "vm1" not in rows and rows["web"].uuid == _uuid("vm1")


def test_two_renames_with_one_event_heard_never_show_one_name_twice(watching, monkeypatch):
    """vm0 renamed away and vm1 renamed to vm0's old name outside svirtd, only vm1's event
    heard yet: the kept vm0 row and vm1's fresh one would both be 'vm0'.  The listing asks
    libvirt instead, so 'vm0' means one domain (its metadata and name patterns go by it)."""
    _rows(watching)
    heard = watching.metadata_cache._heard
    monkeypatch.setattr(watching.metadata_cache, "_heard", lambda uuid: None)  # events held
    conn = watching.connection
    conn.lookupByName("vm0").rename("old0", 0)
    conn.lookupByName("vm1").rename("vm0", 0)
    heard(_uuid("vm1"))  # only vm1's event arrives
    rows = _rows(watching)
    assert sorted(rows) == ["old0", "vm0", "vm2"]
    assert rows["vm0"].uuid == _uuid("vm1") and rows["old0"].uuid == _uuid("vm0")


def test_the_autostart_flag_set_outside_shows_at_once(watching):
    """virDomainSetAutostart sends no event: the flags are asked at every listing."""
    assert not _rows(watching)["vm0"].autostart
    watching.connection.lookupByName("vm0").setAutostart(1)
    assert _rows(watching)["vm0"].autostart  # no waiting: no event comes
    watching.connection.lookupByName("vm0").setAutostart(0)
    assert not _rows(watching)["vm0"].autostart


def test_a_listing_of_the_running_ones_follows_starts_and_stops(watching):
    assert _rows(watching, inactive=False) == {}
    watching.start("vm0")
    assert list(_rows(watching, inactive=False)) == ["vm0"]
    _after_an_event(watching, "vm1", lambda: watching.connection.lookupByName("vm1").create())
    assert sorted(_rows(watching, inactive=False)) == ["vm0", "vm1"]
    _after_an_event(watching, "vm0", lambda: watching.connection.lookupByName("vm0").destroy())
    assert list(_rows(watching, inactive=False)) == ["vm1"]


def test_a_running_domains_row_is_asked_again_after_the_volatile_age(watching):
    """Its CPU time moves without an event; a shut-off one's row does not."""
    now = [1000.0]
    watching.kept_rows._clock = lambda: now[0]
    _after_an_event(
        watching, "vm0", lambda: watching.start("vm0"), own=True
    )  # its event is not to come later
    _rows(watching)
    asked = watching.kept_rows.asked
    now[0] += libvirt_rows.VOLATILE_AGE / 2
    _rows(watching)
    assert watching.kept_rows.asked == asked
    now[0] += libvirt_rows.VOLATILE_AGE
    _rows(watching)
    assert watching.kept_rows.asked == asked + 1  # vm0 only: vm1 and vm2 are shut off
    now[0] += libvirt_events.MAX_AGE
    calls = []
    full = watching._listing_now
    watching._listing_now = lambda inactive: (calls.append(1), full(inactive))[1]
    _rows(watching)
    assert calls == [1]  # past MAX_AGE, every domain is listed again


def test_what_decides_on_what_runs_never_uses_kept_rows(watching):
    """The sVirt categories' rebuild and the realm quotas ask ``list_domains``: a domain
    started by another client is there at once, before its event could be heard."""
    watching.list_domains(include_inactive=False)
    _rows(watching, inactive=False)
    watching.metadata_cache.followers.clear()  # so no event reaches the kept rows at all
    watching.connection.lookupByName("vm2").create()
    assert [d.name for d in watching.list_domains(include_inactive=False)] == ["vm2"]
    assert _rows(watching, inactive=False) == {}  # only list's rows wait for the event


def test_a_listing_that_raced_an_event_keeps_nothing_the_event_concerns():
    kept = libvirt_rows.KeptRows(lambda: True)
    row = libvirt_rows.Row(None, None, float("inf"))

    token, members, _ = kept.begin(True)
    assert members is None
    kept.forget("u1")  # during the listing: u1 changed
    kept.keep(True, token, frozenset({"u1", "u2"}), {"u1": row, "u2": row})
    _, members, rows = kept.begin(True)
    assert members == {"u1", "u2"} and set(rows) == {"u2"}  # u1's row will be asked again

    token, _, _ = kept.begin(True)
    kept.forget("u3")  # a domain outside the listing: it may have joined meanwhile
    kept.keep(True, token, frozenset({"u1", "u2"}), {"u1": row})
    assert kept.begin(True)[1] is None

    token, _, _ = kept.begin(True)
    kept.forget_all()  # an event that could not name its domain
    kept.keep(True, token, frozenset({"u1"}), {"u1": row})
    assert kept.begin(True) == (kept._seq, None, {})


def test_an_event_for_a_member_forgets_its_row_and_one_for_another_domain_the_members():
    kept = libvirt_rows.KeptRows(lambda: True)
    row = libvirt_rows.Row(None, None, float("inf"))
    token, _, _ = kept.begin(True)
    kept.keep(True, token, frozenset({"u1", "u2"}), {"u1": row, "u2": row})
    kept.forget("u2")
    assert set(kept.begin(True)[2]) == {"u1"}
    kept.forget("u9")
    assert kept.begin(True)[1] is None


def test_nothing_is_served_once_the_events_are_not_followed(watching):
    _rows(watching)
    assert watching.kept_rows.account()["rows"] == 3
    watching.metadata_cache.stop()  # the events' source ended (libvirtd went away)
    assert watching.kept_rows.account()["rows"] == 0
    served = watching.kept_rows.served
    assert sorted(_rows(watching)) == ["vm0", "vm1", "vm2"]  # asked of libvirt
    assert watching.kept_rows.served == served


def test_without_watching_list_asks_libvirt_every_time(node):
    backend = LibvirtBackend(node)
    try:
        _rows(backend)
        backend.connection.lookupByName("vm0").create()
        assert _rows(backend)["vm0"].state == "running"  # at once: nothing was kept
        assert backend.kept_rows.account() == {"rows": 0, "listings": 0, "rows_asked": 0}
    finally:
        backend.close()


@pytest.mark.integration
@pytest.mark.parametrize("driver", ["test", "qemu"])
def test_another_clients_changes_through_libvirtd_reach_the_listing(libvirtd, driver):
    """svirtd's connection to libvirtd (events from its helper process) and another client of
    the same libvirtd: a domain it defines joins the listing, a start shows (the test driver:
    a QEMU guest would boot), and a domain it undefines leaves."""
    uri = "test+unix:///default" if driver == "test" else libvirtd.uri
    name = f"svt-keptrows-{driver}"
    xml = domain_xml(name, "alice") if driver == "test" else tiny_guest_xml(name)
    other = libvirt.open(uri)
    watching = LibvirtBackend(uri, watch_events=True)
    try:
        remove_domains(other, name)
        assert wait_until(lambda: watching.metadata_cache.live)  # the helper is ready
        assert name not in _rows(watching)
        other.defineXML(xml)  # each change shows once its event has crossed from libvirtd
        assert wait_until(lambda: _state(watching, name) == "shut off")
        if driver == "test":
            other.lookupByName(name).create()
            assert wait_until(lambda: _state(watching, name) == "running")
            other.lookupByName(name).destroy()
            assert wait_until(lambda: _state(watching, name) == "shut off")
        other.lookupByName(name).undefine()
        assert wait_until(lambda: _state(watching, name) is None)
    finally:
        watching.close()
        remove_domains(other, name)
        other.close()
