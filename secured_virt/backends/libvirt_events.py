"""What libvirt's domain events let a long-lived process remember: each domain's metadata.

Why: a ``list`` shows each row's owner, realm and label and filters on them, and libvirt keeps
them in the domain's ``<metadata>``: one virDomainGetMetadata call per row, ~40% of a
50-domain listing's CPU in svirtd with the test driver in its process, and with libvirtd one
round trip per row.  That element changes only when someone sets it or defines the domain
again (define, a snapshot's revert, a restore, an incoming migration); libvirt announces each
of these as an event (metadata-change, or a life-cycle event).  So svirtd keeps what it read,
per UUID, until libvirt says that domain changed.

How it stays honest:

* Any event for a domain forgets everything kept about it (every life-cycle event, not only
  "defined": a start or a stop may swap the live definition for the persistent one).
* A read that raced an event is not kept: each UUID has a generation, bumped by its events,
  and a value read under an older generation is dropped (``MetadataCache.get``).
* svirtd's own changes (``LibvirtBackend.changed``) forget the domain at once, before the
  call returns: a user's next request never waits for the event of their own change.
* An entry is kept at most ``MAX_AGE`` seconds even without events, so an event lost by a
  driver that does not send it, or by the connection, costs at most that much staleness.
* Kept only for drivers known to announce metadata changes (``WATCHED_DRIVERS``), and only
  while the event registration and the connection are alive; otherwise every read goes to
  libvirt, as before.

What is not cached: a request on one VM (start, dominfo, migrate...) reads its metadata
afresh, since its decision is made on it (the facade's ``_resolve``); only a listing's rows,
which show and filter, use the kept values.  A change made outside svirtd (root's virsh)
reaches a listing when its event has been dispatched, a few milliseconds after the call that
made it returned.

Where the events come from: for an in-process driver (``test:///``), libvirt's default event
loop, run by one thread of svirtd (``ensure_event_loop``, registered before the connection is
opened).  For a connection to a libvirt daemon (``qemu:///system``, ``test+unix://``...), a
helper process of svirtd's own (``backends.libvirt_watch``, which says why) that prints the
UUID of each event's domain on a pipe svirtd reads; if it exits (libvirtd restarted, or it
failed to start), nothing is kept any more.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import libvirt

from secured_virt.lazylog import lazy_logger

log = lazy_logger(__name__)  # direct mode imports this module and logs nothing

#: drivers (``virConnectGetType``, lower case) that send a metadata-change event for every
#: virDomainSetMetadata and life-cycle events for every definition: their domains' metadata
#: may be kept (the test driver, QEMU's; others are read every time)
WATCHED_DRIVERS = frozenset({"test", "qemu"})
#: the longest a value is kept without any event (seconds): a bound on what a lost event costs
MAX_AGE = 10.0
#: how long the helper may take to say it follows the events (seconds); else nothing is kept
HELPER_START_TIMEOUT = 10.0

_loop_lock = threading.Lock()
_loop_state: dict[str, Any] = {"running": False}


def ensure_event_loop() -> bool:
    """Register libvirt's default event loop in this process and run it on a thread of its
    own (once per process).  False if libvirt refuses (then nothing is watched)."""
    with _loop_lock:
        if _loop_state["running"]:
            return True
        try:
            libvirt.virEventRegisterDefaultImpl()
        except libvirt.libvirtError as exc:
            log.warning("libvirt's event loop cannot be registered: %s", exc)
            return False
        threading.Thread(target=_run_loop, name="svirt-libvirt-events", daemon=True).start()
        _loop_state["running"] = True
        return True


def _run_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception as exc:  # one bad iteration must not end the watching
            log.warning("libvirt's event loop: %s", exc)
            time.sleep(0.1)


class MetadataCache:
    """Each domain's metadata element as last read, per (UUID, namespace), forgotten when
    libvirt says the domain changed (the module docstring says why this is safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # (UUID, namespace) -> (value, kept until); the namespaces ever asked, to forget a UUID
        self._entries: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._namespaces: set[str] = set()
        self._generations: dict[str, int] = {}
        self._epoch = 0  # bumped when every domain is forgotten at once
        self._callbacks: list[int] = []
        self._conn: libvirt.virConnect | None = None
        self._helper: subprocess.Popen | None = None
        #: what else forgets with this cache, under its lock (``forget(uuid)``,
        #: ``forget_all()``): the listing rows kept beside it (libvirt_rows), the backend's
        #: OS types
        self.followers: list[Any] = []
        self.live = False
        self.reads = 0  # values read from libvirt while kept ones were wanted
        self.events = 0

    # -- watching -------------------------------------------------------------------------
    def watch(self, conn: libvirt.virConnect, driver: str) -> bool:
        """Start keeping values for ``conn``'s domains: register for their events (the event
        loop must run, see ``ensure_event_loop``).  False, and nothing kept, when the driver
        is not a watched one or libvirt refuses a registration."""
        if driver not in WATCHED_DRIVERS or not _loop_state["running"]:
            return False
        try:
            for event in (
                libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
            ):
                self._callbacks.append(
                    conn.domainEventRegisterAny(None, event, self._on_event, None)
                )
        except libvirt.libvirtError as exc:
            log.info("domain events unavailable on this connection (%s): metadata not kept", exc)
            self._unregister(conn)
            return False
        # a connection to libvirtd that breaks takes its events with it (an in-process
        # driver has no close callback: it cannot break apart from us)
        with contextlib.suppress(libvirt.libvirtError):
            conn.registerCloseCallback(self._on_close, None)
        self._conn = conn
        self.live = True
        return True

    def watch_helper(self, uri: str, driver: str) -> bool:
        """Start keeping values for the domains of a libvirt daemon at ``uri``, told of their
        events by the helper process (``backends.libvirt_watch``), from when it says it
        follows them (``live``; its start, ~0.1 s, holds up no request).  False, and nothing
        kept, when the driver is not a watched one or the helper cannot be started."""
        if driver not in WATCHED_DRIVERS:
            return False
        from . import libvirt_watch

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", libvirt_watch.BOOT, root, uri],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                cwd="/",
            )
        except OSError as exc:
            log.warning("cannot start the libvirt events helper: %s; metadata not kept", exc)
            return False
        self._helper = proc
        threading.Thread(
            target=self._read_helper, args=(proc,), name="svirt-libvirt-events", daemon=True
        ).start()
        return True

    def _read_helper(self, proc: subprocess.Popen) -> None:
        try:
            self._follow_helper(proc)
        finally:  # this thread is the pipe's only reader: it closes it (one fd per helper)
            proc.stdout.close()

    def _follow_helper(self, proc: subprocess.Popen) -> None:
        # nothing is kept before the helper follows the events: a value read before then and
        # changed before then would have no event to forget it
        first = _read_line(proc.stdout, HELPER_START_TIMEOUT)
        with self._lock:
            ours = self._helper is proc
            if ours and first == "ready":
                self.live = True
        if not ours:  # stopped meanwhile (the connection closed)
            return
        if first != "ready":
            log.warning(
                "the libvirt events helper did not start (%s); metadata not kept",
                first or "no answer",
            )
            with self._lock:
                if self._helper is proc:
                    self._helper = None
            _end(proc)
            return
        for raw in proc.stdout:
            line = raw.decode("ascii", "replace").strip()
            self._heard(None if line == "*" else line)  # "*": it could not name the domain
        with self._lock:  # the helper ended (libvirtd went away): keep nothing more
            if self._helper is proc:
                self._forget_all(stop=True)
        _end(proc)  # reaped now, not left a zombie until the next subprocess svirtd starts

    def stop(self) -> None:
        """Keep nothing more, forget everything, and unregister (the connection closes)."""
        with self._lock:
            self._forget_all(stop=True)
            helper, self._helper = self._helper, None
            conn, self._conn = self._conn, None
        if helper is not None:
            _end(helper)
        if conn is not None:
            self._unregister(conn)
            with contextlib.suppress(libvirt.libvirtError):
                conn.unregisterCloseCallback()

    def _unregister(self, conn: libvirt.virConnect) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(cb)

    def _on_event(self, _conn, dom, *_details) -> None:
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:  # cannot tell which
            uuid = None
        self._heard(uuid)

    def _heard(self, uuid: str | None) -> None:
        """An event about domain ``uuid`` (None: a domain that could not be named, so every
        domain is forgotten, and a read under way for any of them is not kept)."""
        if uuid is None:
            with self._lock:
                self._forget_all()
            return
        self.forget(uuid)
        self.events += 1  # once handled: who waits for it finds the domain forgotten

    def _on_close(self, _conn, _reason, _opaque) -> None:
        with self._lock:
            self._forget_all(stop=True)

    def _forget_all(self, *, stop: bool = False) -> None:
        """Forget every domain, and make every read under way not be kept; with ``stop``,
        keep nothing more either.  Called with the lock held."""
        if stop:
            self.live = False
        self._entries.clear()
        self._epoch += 1
        for follower in self.followers:
            follower.forget_all()

    # -- reading --------------------------------------------------------------------------
    def forget(self, uuid: str) -> None:
        """Forget what is kept of ``uuid``, and make a read under way for it not be kept."""
        with self._lock:
            self._generations[uuid] = self._generations.get(uuid, 0) + 1
            for ns_uri in self._namespaces:
                self._entries.pop((uuid, ns_uri), None)
            for follower in self.followers:
                follower.forget(uuid)

    def get(self, uuid: str, ns_uri: str, read: Callable[[], str | None]) -> str | None:
        """``read()``'s value for ``uuid``'s element in ``ns_uri``: the kept one while no event
        said the domain changed (and for at most MAX_AGE), else read afresh and kept.  A read
        that raises is not kept (the caller reports it)."""
        if not self.live:
            return read()
        hit = self._entries.get((uuid, ns_uri))  # the path of nearly every row: kept short
        if hit is not None and hit[1] > self._clock():
            return hit[0]
        return self._read(uuid, ns_uri, read)

    def holds(self, uuid: str | None, ns_uri: str) -> bool:
        """Whether ``get`` would answer for ``uuid`` without reading libvirt now."""
        if uuid is None or not self.live:
            return False
        hit = self._entries.get((uuid, ns_uri))
        return hit is not None and hit[1] > self._clock()

    def _read(self, uuid: str, ns_uri: str, read: Callable[[], str | None]) -> str | None:
        now = self._clock()
        with self._lock:
            generation = (self._epoch, self._generations.get(uuid, 0))
        value = read()
        with self._lock:
            self.reads += 1
            if self.live and (self._epoch, self._generations.get(uuid, 0)) == generation:
                self._namespaces.add(ns_uri)
                self._entries[(uuid, ns_uri)] = (value, now + MAX_AGE)
        return value

    def account(self) -> dict:
        """For ``svirt-admin status``: whether values are kept, and how often they served."""
        return {
            "live": self.live,
            "kept": len(self._entries),
            "reads": self.reads,
            "events": self.events,
        }


def _read_line(stream, timeout: float) -> str | None:
    """One line of ``stream`` (a pipe), or None after ``timeout`` seconds or at end of file."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1)  # byte by byte: what follows the line stays for the reader
        if not chunk:
            return None
        buf += chunk
    return buf.decode("ascii", "replace").strip()


def _end(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
