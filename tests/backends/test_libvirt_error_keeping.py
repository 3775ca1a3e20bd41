"""A garbage collection between a failed libvirt call and its exception must not lose the error.

libvirt keeps the last error per thread and every public call, virDomainFree too, resets it.
libvirt-python reads that error in ``libvirtError.__init__``, after the C call has failed; the
exception's allocation can run the cyclic garbage collector, and a ``virDomain`` in the garbage
then frees itself in between. These tests build exactly that garbage and make every allocation
collect, so without ``libvirt_errors._keep_pending_errors`` each of them fails every time.
"""

from __future__ import annotations

import gc

import libvirt
import pytest

from secured_virt.backends import libvirt_errors
from secured_virt.backends.base import BackendError, NoSuchDomain


class _Cycle:
    """An object that refers to itself, so only the cyclic collector frees what it holds."""

    def __init__(self, held):
        self.me = self
        self.held = held


@pytest.fixture
def domains_freed_in_every_collection(lv):
    """Collect at every allocation, each collection leaving a domain handle in a cycle for the
    next one: whenever libvirt-python allocates its exception, the collector frees a domain.
    The handles are looked up beforehand (a lookup inside the collector would itself reset the
    error); after the test, the fixture checks that the pool did not run dry (else the
    collector freed nothing during the test's last calls, and it proved nothing)."""
    pool = [lv.connection.lookupByName("alice-web") for _ in range(20000)]

    def leave_garbage(phase, _info):
        if phase == "stop" and pool:
            _Cycle(pool.pop())

    old = gc.get_threshold()
    gc.collect()
    gc.callbacks.append(leave_garbage)
    gc.set_threshold(1)
    try:
        yield
        assert pool, "the collector ran out of garbage to free"
    finally:
        gc.set_threshold(*old)
        gc.callbacks.remove(leave_garbage)
        pool.clear()
        gc.collect()
        libvirt_errors.free_deferred()


def test_a_collected_domain_does_not_erase_the_error_of_a_failed_lookup(
    lv, domains_freed_in_every_collection
):
    conn = lv.connection
    for _ in range(50):
        with pytest.raises(libvirt.libvirtError) as ei:
            conn.lookupByName("no-such-vm")
        assert ei.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        assert "failed" not in str(ei.value)  # libvirt's words, not the placeholder


def test_the_backend_still_says_which_target_exists(lv, domains_freed_in_every_collection):
    # the attach falls back to a redefinition only on VIR_ERR_NO_SUPPORT: with the code lost,
    # the user got "virDomainAttachDeviceFlags() failed" instead of the reason
    for _ in range(20):
        with pytest.raises(BackendError, match="target vda already exists"):
            lv.attach_disk("alice-db", "/tmp/other.img", "vda", live=False, config=True)


def test_a_vanished_domain_is_still_told_as_such(lv, domains_freed_in_every_collection):
    for _ in range(20):
        with pytest.raises(NoSuchDomain):
            lv.lookup("no-such-vm")


def test_what_was_kept_is_freed_at_the_next_lookup(lv, domains_freed_in_every_collection):
    conn = lv.connection
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName("no-such-vm")  # the collection ran while the error was pending
    assert libvirt_errors._deferred, "the domain's finalizer should have kept it"
    kept = [obj for _fin, obj in libvirt_errors._deferred]
    lv.lookup("alice-web")
    assert not libvirt_errors._deferred
    assert all(obj._o is None for obj in kept)  # freed by libvirt-python's own finalizer


def test_with_no_error_pending_a_finalizer_frees_at_once(lv):
    dom = lv.connection.lookupByName("alice-web")
    dom.name()  # a successful call: nothing pending on this thread
    del dom  # no cycle: freed by reference count, here
    assert not libvirt_errors._deferred


def test_every_libvirt_class_with_a_finalizer_is_covered():
    classes = [c for c in vars(libvirt).values() if isinstance(c, type) and "__del__" in vars(c)]
    assert libvirt.virDomain in classes and libvirt.virConnect in classes
    assert all(getattr(c.__del__, "keeps_pending_errors", False) for c in classes)


def test_absent_metadata_is_still_told_apart_from_a_failure(lv, domains_freed_in_every_collection):
    # "no metadata in this namespace" is an error code; with it erased, the read would fail
    for _ in range(20):
        assert lv.get_metadata("alice-web", "urn:example:other") is None


def test_a_kept_finalizer_that_fails_is_told_not_raised_into_the_next_request(lv, caplog):
    def failing(_obj):
        raise RuntimeError("boom")

    libvirt_errors._deferred.append((failing, object()))
    assert lv.lookup("alice-web").name == "alice-web"  # the lookup freed what was kept
    assert not libvirt_errors._deferred
    assert "freeing a libvirt object failed: RuntimeError('boom')" in caplog.text


def test_threads_failing_at_once_each_keep_their_own_error(lv, domains_freed_in_every_collection):
    # libvirt's last error is per thread and a collection runs on whichever thread allocates:
    # a finalizer must look at its own thread's error, and what it keeps is freed by any thread
    import threading

    conn = lv.connection
    lost: list[object] = []

    def fail_many() -> None:
        for _ in range(100):
            try:
                conn.lookupByName("no-such-vm")
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    lost.append(exc.get_error_code())

    threads = [threading.Thread(target=fail_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lost == []
    lv.lookup("alice-web")
    assert not libvirt_errors._deferred
