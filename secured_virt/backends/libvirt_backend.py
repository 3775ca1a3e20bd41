"""The libvirt backend: any libvirt URI; by default the test driver ``test:///default``.

Domains are always looked up by *name* (names are data: a name that looks like a number or a
UUID is still a name, unlike virsh's id -> uuid -> name resolution).  Every libvirt failure
becomes a BackendError with a sentence a person can act on (see libvirt_errors), and libvirt's
own stderr reporting is switched off when this module is imported.

Where a driver lacks an API, this module says so (code ``unsupported``) instead of pretending,
with two documented exceptions that keep the test-driver demo useful:

* config-only device changes (attach/detach with --config, or --current on an inactive
  domain) fall back to "edit the persistent XML and define it again" when the driver has no
  AttachDeviceFlags/DetachDeviceFlags (the test driver in libvirt 9.x) - exactly what
  ``virsh edit`` would do;
* migration between two ``test:`` URIs is *simulated* (see ``_simulated_migrate``): the test
  driver has no migration at all.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

import libvirt
from lxml import etree

from secured_virt.waiting import for_others

from . import domxml, metadata
from .base import (
    BackendError,
    DomainChanged,
    DomainInfo,
    NoSuchDomain,
    ProgressCallback,
    SnapshotInfo,
    report_progress,
    state_word,
    virsh_order,
)

# libvirt_errors also switches off libvirt's own printing of errors to stderr, on import.
from .libvirt_errors import clean_message, connect_error, free_deferred, translate
from .libvirt_events import MetadataCache, ensure_event_loop
from .libvirt_hostinfo import LibvirtHostInfo
from .libvirt_rows import KeptRows, kept_listing, listed_uuids
from .libvirt_storage import LibvirtStorage

DEFAULT_URI = "test:///default"

_AFFECT_CURRENT = libvirt.VIR_DOMAIN_AFFECT_CURRENT
_AFFECT_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_AFFECT_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_LIST_ACTIVE = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
_LIST_TRANSIENT = libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT
_LIST_AUTOSTART = libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART


def _affect(live: bool | None, config: bool) -> int:
    """virsh's --live/--config/--current as flags: neither means "current"."""
    flags = 0
    if live:
        flags |= _AFFECT_LIVE
    if config:
        flags |= _AFFECT_CONFIG
    return flags or _AFFECT_CURRENT


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise BackendError("invalid-arg", f"invalid domain name {name!r}")
    return name


def _check_path(path: Any, what: str) -> str:
    if not isinstance(path, str) or not path or "\x00" in path:
        raise BackendError("invalid-arg", f"invalid {what} path {path!r}")
    if not os.path.isabs(path):
        raise BackendError(
            "invalid-arg",
            f"{what} path {path!r} must be absolute: the hypervisor does not share your "
            "working directory",
        )
    return path


def _check_positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BackendError("invalid-arg", f"invalid {what} {value!r}: expected a positive integer")
    return value


def is_test_uri(uri: str) -> bool:
    return urlsplit(uri).scheme == "test"


def _in_process(uri: str) -> bool:
    """Whether the driver runs inside this process (test:///...), not in a libvirt daemon."""
    parts = urlsplit(uri)
    return parts.scheme == "test" and not parts.netloc


def _test_node_file(uri: str) -> str | None:
    """The node file of a test:///path URI (None for test:///default or a remote test URI)."""
    parts = urlsplit(uri)
    if parts.scheme != "test" or parts.netloc:
        return None
    path = unquote(parts.path)
    return None if path in ("", "/default") else path


#: virsh's words for the reason behind each state (virsh-domain-monitor.c), by state number;
#: a reason number past the end of its row, or an unknown state, is "unknown" as in virsh.
_REASON_WORDS: tuple[tuple[str, ...], ...] = (
    ("unknown",),  # 0 no state
    (  # 1 running
        "unknown",
        "booted",
        "migrated",
        "restored",
        "from snapshot",
        "unpaused",
        "migration canceled",
        "save canceled",
        "event wakeup",
        "crashed",
        "post-copy",
        "post-copy failed",
    ),
    ("unknown",),  # 2 idle (blocked)
    (  # 3 paused
        "unknown",
        "user",
        "migrating",
        "saving",
        "dumping",
        "I/O error",
        "watchdog",
        "from snapshot",
        "shutting down",
        "creating snapshot",
        "crashed",
        "starting up",
        "post-copy",
        "post-copy failed",
        "api error",
    ),
    ("unknown", "user"),  # 4 in shutdown
    (  # 5 shut off
        "unknown",
        "shutdown",
        "destroyed",
        "crashed",
        "migrated",
        "saved",
        "failed",
        "from snapshot",
        "daemon",
    ),
    ("unknown", "panicked"),  # 6 crashed
    ("unknown",),  # 7 pmsuspended
)


def reason_word(state: int, reason: int) -> str:
    """virsh's word for a (virDomainState, reason) pair."""
    if 0 <= state < len(_REASON_WORDS) and 0 <= reason < len(_REASON_WORDS[state]):
        return _REASON_WORDS[state][reason]
    return "unknown"


class _OsTypes(dict):
    """UUID -> OS type, a follower of the metadata cache: forgotten with a domain's metadata
    (its event, or svirtd's own change), and all at once when every domain is (an unnamed
    event, a connection closed)."""

    def forget(self, uuid: str) -> None:
        self.pop(uuid, None)

    def forget_all(self) -> None:
        self.clear()


class LibvirtBackend(LibvirtHostInfo, LibvirtStorage):
    """Backend on one long-lived libvirt connection (shared by threads: libvirt is MT-safe)."""

    name = "libvirt"

    def __init__(
        self,
        uri: str | None = None,
        *,
        migrate_poll_interval: float = 0.5,
        watch_events: bool = False,
    ) -> None:
        """``watch_events``: a long-lived process's backend (svirtd's): run libvirt's event
        loop and keep each domain's metadata for listings until an event says it changed
        (libvirt_events says why and when that is safe).  A one-request process gains
        nothing from it and starts no thread."""
        self.uri = uri or DEFAULT_URI
        self._poll = migrate_poll_interval
        # an in-process driver's events come from an event loop here, registered before the
        # connection opens; a daemon's from a helper process (libvirt_watch says why)
        in_process = _in_process(self.uri)
        looping = watch_events and in_process and ensure_event_loop()
        self._conn = self._open(self.uri)
        self.driver = self._driver_name()
        #: each domain's OS type, asked once (it changes only with a new definition)
        self._os_types = _OsTypes()
        self.metadata_cache = MetadataCache()
        #: list's rows, kept as long as the metadata is (libvirt_rows)
        self.kept_rows = KeptRows(lambda: self.metadata_cache.live)
        # both forget a domain with the metadata: at its event, or svirtd's own change of it
        self.metadata_cache.followers += [self.kept_rows, self._os_types]
        if looping:
            self.metadata_cache.watch(self._conn, self.driver)
        elif watch_events and not in_process:
            self.metadata_cache.watch_helper(self.uri, self.driver)
        self._peers: dict[str, libvirt.virConnect] = {}
        self._lock = threading.Lock()
        self._pins = threading.local()  # name -> UUID, per thread (see pinned)
        self._security_model: tuple[str, str] | None = None  # see host_security_model
        # listings in progress and waiting to start, per kind (see listing)
        self._flights: dict[bool, tuple[_Flight | None, _Flight | None]] = {}
        self._flight_lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------
    @staticmethod
    def _open(uri: str) -> libvirt.virConnect:
        node = _test_node_file(uri)
        if node is not None and not os.access(node, os.R_OK):
            # Checked here because libxml2 would print an "I/O warning" to stderr first.
            raise BackendError(
                "connection",
                f"cannot connect to {uri}: the test driver node file {node} does not exist or "
                "is not readable (use test:///default for the built-in one)",
            )
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise connect_error(exc, uri) from None
        if conn is None:  # very old bindings returned None instead of raising
            raise BackendError("connection", f"cannot connect to {uri}")
        return conn

    def _driver_name(self) -> str:
        try:
            return self._conn.getType().lower()
        except libvirt.libvirtError:
            return ""

    @property
    def connection(self) -> libvirt.virConnect:
        """The underlying virConnect (for tests and the daemon's console relay)."""
        if self._conn is None:
            raise BackendError("connection", f"the connection to {self.uri} is closed")
        return self._conn

    def close(self) -> None:
        self.metadata_cache.stop()
        with self._lock:
            conns, self._conn = [self._conn, *self._peers.values()], None
            self._peers = {}
        for conn in conns:
            if conn is None:
                continue
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def __enter__(self) -> LibvirtBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------
    @contextlib.contextmanager
    def pinned(self, name: str, uuid: str | None):
        """Inside the block, ``name`` is looked up by ``uuid`` (Backend.pinned says why).

        A virDomain obtained by UUID keeps addressing that UUID in every later call, so a VM
        redefined under the same name in between is never touched.  Pins are per thread:
        svirtd serves requests on several threads over one connection.
        """
        if not uuid:
            yield
            return
        pins = self._pins.__dict__.setdefault("by_name", {})
        previous = pins.get(name)
        pins[name] = uuid
        handles = self._pins.__dict__.setdefault("handles", {})
        kept = handles.pop(name, None)
        same = previous == uuid  # inside a block pinned to the same VM
        if same and kept is not None:
            handles[name] = kept  # the enclosing block's handle serves this one
        try:
            yield
        finally:
            current = handles.pop(name, None)
            if same:  # the enclosing block goes on with this block's handle, if any is left
                if current is not None:  # (a change inside dropped it: _forget)
                    handles[name] = current
            elif kept is not None:
                handles[name] = kept
            if previous is None:
                pins.pop(name, None)
            else:
                pins[name] = previous

    def _pin_of(self, name: str) -> str | None:
        """The UUID this thread's ``pinned`` block holds ``name`` to (None: not pinned)."""
        return getattr(self._pins, "by_name", {}).get(name)

    def _dom(self, name: str) -> libvirt.virDomain:
        """The domain called ``name``: inside ``pinned``, the checked UUID's handle, looked up
        and its name checked once per pinned block, then kept for the block's later calls (a
        handle addresses its UUID in every call, so the kept one acts on the checked VM just
        the same; dominfo's five calls cost one lookup, not five lookups and five name reads,
        each a GIL hand-off under load)."""
        _check_name(name)
        uuid = self._pin_of(name)
        if uuid is not None:
            kept = self._pins.__dict__.get("handles", {}).get(name)
            if kept is not None and kept[0] == uuid:
                return kept[1]
        free_deferred()
        try:
            if uuid is None:
                return self.connection.lookupByName(name)
            dom = self.connection.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise (NoSuchDomain(name) if uuid is None else DomainChanged(name, uuid)) from None
            raise self._translate(exc, action="look up", name=name) from None
        if dom.name() != name:  # renamed since the check; the name now means nothing checked
            raise DomainChanged(name, uuid)
        self._pins.__dict__.setdefault("handles", {})[name] = (uuid, dom)
        return dom

    def _translate(self, exc: libvirt.libvirtError, **kw) -> BackendError:
        """translate(), but a dead connection is always code "connection" (callers reconnect)."""
        conn = self._conn
        try:
            alive = conn is not None and bool(conn.isAlive())
        except libvirt.libvirtError:
            alive = False
        if not alive:
            return BackendError(
                "connection",
                f"the connection to {self.uri} was lost (libvirtd restarted?): "
                f"{clean_message(exc)}",
            )
        return translate(exc, driver=self.driver, **kw)

    def _err(self, exc: libvirt.libvirtError, action: str, name: str, dom=None) -> BackendError:
        """_translate(), with a plainer sentence when the domain's state explains the refusal."""
        err = self._translate(exc, action=action, name=name)
        if err.code != "operation-failed" or dom is None:
            return err
        hint = self._state_hint(dom, action, name)
        return BackendError(err.code, hint) if hint else err

    @staticmethod
    def _state_hint(dom: libvirt.virDomain, action: str, name: str) -> str | None:
        try:
            state = dom.state()[0]
        except libvirt.libvirtError:
            return None
        running = state not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_NOSTATE)
        if action == "start" and running:
            return f"domain '{name}' is already running"
        if action in ("shut down", "reboot", "reset", "destroy", "suspend", "save") and not running:
            return f"domain '{name}' is not running"
        if action == "suspend" and state == libvirt.VIR_DOMAIN_PAUSED:
            return f"domain '{name}' is already paused"
        if action == "resume":
            if not running:
                return f"domain '{name}' is not running"
            if state != libvirt.VIR_DOMAIN_PAUSED:
                return f"domain '{name}' is not paused"
        return None

    def _do(self, action: str, name: str, fn: Callable[[libvirt.virDomain], Any]) -> Any:
        dom = self._dom(name)
        try:
            return fn(dom)
        except libvirt.libvirtError as exc:
            uuid = self._pin_of(name)
            if uuid is not None and exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                # the pinned VM went away since its handle was taken (a name now held by
                # another VM, if any, means nothing that was checked)
                raise DomainChanged(name, uuid) from None
            raise self._err(exc, action, name, dom) from None

    def _changing(self, action: str, name: str, fn: Callable[[libvirt.virDomain], Any]) -> Any:
        """``_do`` for a call that may change what the domain's definition says (its metadata
        among it): what is kept of the domain is forgotten when the call returns or fails,
        without waiting for libvirt's event (libvirt_events)."""

        def changing(dom):
            try:
                return fn(dom)
            finally:
                self._forget(dom)

        return self._do(action, name, changing)

    def _forget(self, dom: libvirt.virDomain) -> None:
        # a handle keeps the id the domain had when it was looked up (virDomainGetID asks no
        # driver): after a change, this thread's pinned blocks look the domain up again
        handles = self._pins.__dict__.get("handles")
        if handles:
            for name in [n for n, (_u, h) in handles.items() if h is dom]:
                del handles[name]
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        self.metadata_cache.forget(uuid)  # and its followers: the kept row, the OS type

    def _os_type(self, dom: libvirt.virDomain, uuid: str) -> str:
        os_type = self._os_types.get(uuid)
        if os_type is None:
            try:
                os_type = dom.OSType()
            except libvirt.libvirtError:
                return ""
            self._os_types[uuid] = os_type
        return os_type

    def _info(
        self,
        dom: libvirt.virDomain,
        *,
        persistent: bool | None = None,
        autostart: bool | None = None,
        uuid: str | None = None,
        name: str | None = None,
        flags: bool = True,
    ) -> DomainInfo:
        """One domain's row.  ``name``: the name the handle was looked up by (not asked
        again).  A shut-off domain has no id (libvirt's is -1 for every inactive domain), so
        ID() is asked of the others only: each call we leave out is a GIL hand-off less.
        ``flags=False``: persistent and autostart not asked (None), see ``resolve``."""
        state, max_mem, mem, vcpus, cpu_time = dom.info()
        uuid = uuid or dom.UUIDString()
        dom_id = -1 if state == libvirt.VIR_DOMAIN_SHUTOFF else dom.ID()
        return DomainInfo(
            name=name or dom.name(),
            uuid=uuid,
            id=dom_id if dom_id >= 0 else None,
            state=state_word(state),
            max_mem_kib=int(max_mem),
            mem_kib=int(mem),
            vcpus=int(vcpus),
            cpu_time_ns=int(cpu_time),
            persistent=(
                persistent if persistent is not None or not flags else bool(dom.isPersistent())
            ),
            autostart=autostart if autostart is not None or not flags else bool(dom.autostart()),
            os_type=self._os_type(dom, uuid),
        )

    # -- listing --------------------------------------------------------------------------
    def list_domains(self, *, include_inactive: bool = False) -> list[DomainInfo]:
        """All (or all active) domains, sorted as virsh does: running by id, then by name
        ignoring ASCII case (virsh's strcasecmp).

        One listAllDomains call per property that libvirt can filter on (the set, the
        persistent ones, the autostarted ones), then one info() per domain; the OS type is
        cached per UUID.  A domain that vanishes while we look is skipped.
        """
        # a copy: the listing may be shared with other requests (see listing)
        return list(self.listing(include_inactive=include_inactive).domains)

    def listing(self, *, include_inactive: bool = False) -> DomainListing:
        """``list_domains()``, and the listed domains' handles for what a listing shows next:
        each one's metadata and managed-save image, asked of the very domain that was listed
        (by its handle, i.e. its UUID) instead of looking every name up again.  Meant for
        one listing's rows, then dropped: a later request looks names up afresh.

        Shared by the requests that ask at the same moment, like the audit's group commit: a
        request that arrives while a listing of the same kind runs waits for it to end and
        then takes part in the next one, which all requests that arrived meanwhile share (one
        pass over libvirt for all of them, ~250 calls at 50 domains, each a GIL hand-off
        under load).  Never an older one: a request only shares a listing that started after
        it arrived, so its rows are as fresh as its own listing would have been (the rows'
        metadata is read after that start too, once per listing, or in svirtd kept since
        libvirt last said the domain changed: DomainListing.metadata).
        Callers filter the shared rows per caller; the listing itself is nobody's view."""
        key = bool(include_inactive)
        with self._flight_lock:
            running, waiting = self._flights.get(key, (None, None))
            lead = waiting is None
            if lead:
                waiting = _Flight()
                self._flights[key] = (waiting, None) if running is None else (running, waiting)
        mine = waiting
        if not lead:
            with for_others():  # no CPU needed meanwhile (secured_virt.waiting)
                mine.done.wait()
            if mine.result is not None:
                return mine.result
            return self._listing_now(include_inactive)  # the shared one failed: say why alone
        if running is not None:  # ours starts when the running one is done
            with for_others():
                running.done.wait()
            with self._flight_lock:
                self._flights[key] = (mine, None)  # started: later arrivals wait for the next
        try:
            mine.result = self._listing_now(include_inactive)
            return mine.result
        finally:
            with self._flight_lock:
                if self._flights.get(key, (None,))[0] is mine:
                    nxt = self._flights[key][1]
                    if nxt is None:
                        del self._flights[key]
                    else:
                        self._flights[key] = (None, nxt)  # nxt's leader moves it to running
            mine.done.set()

    def kept_listing(self, *, include_inactive: bool = False) -> DomainListing:
        """``listing()`` for what ``list`` shows: in a watching backend (svirtd's), from the
        rows kept since libvirt's events last said a domain changed, asking libvirt only for
        the rest (libvirt_rows says what is kept and for how long); elsewhere ``listing()``.
        Not for a decision on what runs: that asks ``listing()``."""
        if not self.metadata_cache.live:
            return self.listing(include_inactive=include_inactive)
        return kept_listing(self, include_inactive, self.kept_rows, DomainListing)

    def _listing_now(self, include_inactive: bool) -> DomainListing:
        base = 0 if include_inactive else _LIST_ACTIVE
        conn = self.connection
        try:
            doms = conn.listAllDomains(base)
            transient, autostart = _transient_and_autostart(conn, base)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="list domains") from None

        def row(dom):
            uuid = dom.UUIDString()
            try:
                info = self._info(
                    dom, persistent=uuid not in transient, autostart=uuid in autostart, uuid=uuid
                )
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None  # gone while we looked: not listed
                raise
            return info, dom

        out, handles = [], {}
        try:
            for got in self.each(row, doms):
                if got is not None:
                    out.append(got[0])
                    handles[got[0].name] = got[1]
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="list domains") from None
        out.sort(key=virsh_order)
        return DomainListing(self, out, handles)

    def each(self, fn: Callable[[Any], Any], items: list) -> Iterable:
        """``map(fn, items)``, in order; over a connection to a daemon (anything but the
        in-process test driver) and for ``PARALLEL_FROM`` items or more, run by the row
        threads (``_row_pool``) so that the round trips overlap.

        Why: each row of a listing is a round trip to libvirtd for its info and another for
        its metadata (virsh's list makes one), ~0.1 ms each; 50 domains asked one after the
        other took 9.5 ms, from 8 threads 3.5-4 ms (libvirtd's test driver; libvirt's client
        multiplexes calls of several threads on one connection).  In-process, a call is a
        function call and the threads' hand-offs would only add to it.  The first exception
        is raised when its item's turn comes, as ``map`` does."""
        if not self.overlaps(len(items)):
            return map(fn, items)
        return _row_pool().map(fn, items)

    def overlaps(self, n: int) -> bool:
        """Whether ``each`` runs ``n`` items by the row threads (see there)."""
        return n >= PARALLEL_FROM and not is_test_uri(self.uri)

    def listing_by_name(self, *, include_inactive: bool = False) -> NamedListing:
        """The listed domains' names and ids only, in virsh's order; each one's row is asked
        later, one at a time (``NamedListing.info``).

        Why: a streamed ``list`` (the Xen-API's ``VM.get_all_records``) decides on names
        alone, and its first rows should leave before the last ones are asked for.  A name
        and an id are held by the handle listAllDomains returns (no call into the driver, no
        round trip to libvirtd), so the decision waits for one listAllDomains call; the rows'
        info() calls, the round trips of a listing, follow while the first rows are already
        being sent.  Not shared between requests (``listing``'s flights): a streamed listing
        is a rare, large request whose rows are fresh by construction."""
        base = 0 if include_inactive else _LIST_ACTIVE
        try:
            doms = self.connection.listAllDomains(base)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="list domains") from None
        entries, handles = [], {}
        for dom in doms:
            try:
                name, dom_id = dom.name(), dom.ID()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                raise self._translate(exc, action="list domains") from None
            entries.append(ListedName(name, dom_id if dom_id >= 0 else None))
            handles[name] = dom
        entries.sort(key=virsh_order)
        return NamedListing(self, entries, handles, base)

    def lookup(self, name: str) -> DomainInfo:
        return self._do("get information about", name, lambda d: self._info(d, name=name))

    def resolve(self, name: str, ns_uri: str) -> tuple[DomainInfo, str | None]:
        """``lookup(name)`` and ``get_metadata(name, ns_uri)`` of the same handle: one lookup
        for what every request on a VM needs before its decision (the facade's _resolve).

        The row's ``persistent`` and ``autostart`` are not asked (None): two round trips to
        libvirtd on every request on a VM, which only dominfo and autostart show or use (they
        ask ``is_persistent`` and ``get_autostart``, ``queries._with_flags``)."""

        def both(dom):
            info = self._info(dom, name=name, flags=False)
            return info, self._read_metadata(dom, ns_uri, _AFFECT_CURRENT)

        info, raw = self._do("get information about", name, both)
        return info, (_from_libvirt(raw, ns_uri) if raw else None)

    # -- what virsh shows beyond DomainInfo (dominfo, domstate --reason, list's filters) ----
    def state_reason(self, name: str) -> str:
        """virsh's word for why the domain is in its state (``domstate --reason``)."""
        state, reason = self._do("get the state of", name, lambda d: d.state())
        return reason_word(state, reason)

    def has_managed_save(self, name: str) -> bool | None:
        """Whether a managed save image waits for the next start (None: cannot tell)."""
        try:
            return bool(self._do("inspect", name, lambda d: d.hasManagedSaveImage(0)))
        except BackendError as exc:
            if exc.code == "no-domain":
                raise
            return None

    def has_snapshots(self, name: str) -> bool:
        return self._do("count the snapshots of", name, lambda d: d.snapshotNum(0) > 0)

    def title(self, name: str) -> str:
        """The domain's <title> ("" when it has none), as ``virsh list --title`` shows it."""

        def get(dom):
            try:
                return dom.metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None, 0) or ""
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    return ""
                raise

        return self._do("read the title of", name, get)

    def host_security_model(self) -> tuple[str, str]:
        """(model, DOI) of the host's security driver; ("", "") when there is none.

        Asked once per connection: the driver's security manager is chosen when the
        hypervisor daemon starts, and a restarted daemon means a new connection (reconnect
        builds a new backend)."""
        known = self._security_model
        if known is not None:
            return known
        try:
            model, doi = self.connection.getSecurityModel()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                self._security_model = ("", "")
                return "", ""
            raise self._translate(exc, action="read the security model") from None
        self._security_model = (model or "", doi or "")
        return self._security_model

    def security_label(self, name: str) -> tuple[str, bool]:
        """(label, enforcing) the security driver gave the domain ("" when it has none)."""
        label, enforcing = self._do("read the security label of", name, lambda d: d.securityLabel())
        return label or "", bool(enforcing)

    # -- life cycle -----------------------------------------------------------------------
    def start(self, name: str) -> None:
        self._changing("start", name, lambda d: d.create())

    def shutdown(self, name: str) -> None:
        self._changing("shut down", name, lambda d: d.shutdown())

    def reboot(self, name: str) -> None:
        self._changing("reboot", name, lambda d: d.reboot(0))

    def reset(self, name: str) -> None:
        self._changing("reset", name, lambda d: d.reset(0))

    def destroy(self, name: str) -> None:
        self._changing("destroy", name, lambda d: d.destroy())

    def suspend(self, name: str) -> None:
        self._changing("suspend", name, lambda d: d.suspend())

    def resume(self, name: str) -> None:
        self._changing("resume", name, lambda d: d.resume())

    # -- save / restore -------------------------------------------------------------------
    def save(self, name: str, path: str) -> None:
        _check_path(path, "save image")
        self._changing("save", name, lambda d: d.save(path))

    def saved_image_xml(self, path: str) -> str:
        """The domain XML stored in a save image (name, uuid, <metadata> with owner/label)."""
        _check_path(path, "save image")
        try:
            return self.connection.saveImageGetXMLDesc(path, 0)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="read", what=f"the save image '{path}'") from None

    def restore(self, path: str) -> str:
        name = domxml.domain_name(self.saved_image_xml(path))
        try:
            self.connection.restore(path)
        except libvirt.libvirtError as exc:
            err = self._translate(exc, action="restore", what=f"domain '{name}' from '{path}'")
            raise err from None
        with contextlib.suppress(libvirt.libvirtError):
            self._forget(self.connection.lookupByName(name))
        return name

    # -- definitions ----------------------------------------------------------------------
    def define(self, xml: str) -> str:
        try:
            dom = self.connection.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="define", what="the domain") from None
        self._forget(dom)
        return dom.name()

    def create(self, xml: str) -> str:
        try:
            dom = self.connection.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="create", what="the domain") from None
        self._forget(dom)
        return dom.name()

    def undefine(self, name: str) -> None:
        def undefine(dom):
            try:
                dom.undefineFlags(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                    raise
                dom.undefine()

        self._changing("undefine", name, undefine)

    def dumpxml(self, name: str, *, inactive: bool = False, security_info: bool = False) -> str:
        flags = (libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0) | (
            libvirt.VIR_DOMAIN_XML_SECURE if security_info else 0
        )
        return self._do("dump the XML of", name, lambda d: d.XMLDesc(flags))

    # -- resources ------------------------------------------------------------------------
    def setmem(self, name: str, kib: int, *, live: bool = True, config: bool = False) -> None:
        _check_positive(kib, "memory size (KiB)")

        def setmem(dom):
            try:
                dom.setMemoryFlags(kib, _affect(live, config))
            except libvirt.libvirtError as exc:
                # Some drivers (test) refuse live+config in one call; do it as two.
                if not (live and config) or exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                    raise
                dom.setMemoryFlags(kib, _AFFECT_LIVE)
                dom.setMemoryFlags(kib, _AFFECT_CONFIG)

        self._changing("change the memory of", name, setmem)

    def setmaxmem(self, name: str, kib: int, *, config: bool = True) -> None:
        _check_positive(kib, "memory size (KiB)")
        flags = libvirt.VIR_DOMAIN_MEM_MAXIMUM | (_AFFECT_CONFIG if config else _AFFECT_CURRENT)
        self._changing("change the maximum memory of", name, lambda d: d.setMemoryFlags(kib, flags))

    def setvcpus(self, name: str, count: int, *, live: bool = True, config: bool = False) -> None:
        _check_positive(count, "vCPU count")
        flags = _affect(live, config)
        self._changing("change the vCPUs of", name, lambda d: d.setVcpusFlags(count, flags))

    # -- devices --------------------------------------------------------------------------
    def _device_xml(self, dom: libvirt.virDomain, flags: int) -> etree._Element:
        """The XML the change applies to: persistent config for --config, else live."""
        config_only = flags == _AFFECT_CONFIG or (flags == _AFFECT_CURRENT and not dom.isActive())
        xml_flags = libvirt.VIR_DOMAIN_XML_INACTIVE if config_only else 0
        return domxml.parse(dom.XMLDesc(xml_flags))

    def _change_device(
        self, name: str, action: str, device: etree._Element, flags: int, *, attach: bool
    ) -> None:
        def change(dom):
            xml = domxml.to_text(device)
            try:
                if attach:
                    dom.attachDeviceFlags(xml, flags)
                else:
                    dom.detachDeviceFlags(xml, flags)
            except libvirt.libvirtError as exc:
                if not self._redefine_fallback_applies(dom, exc, flags):
                    raise
                self._redefine_with(dom, device, attach=attach)

        self._changing(action, name, change)

    @staticmethod
    def _redefine_fallback_applies(dom, exc: libvirt.libvirtError, flags: int) -> bool:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT or not dom.isPersistent():
            return False
        return flags == _AFFECT_CONFIG or (flags == _AFFECT_CURRENT and not dom.isActive())

    def _redefine_with(self, dom, device: etree._Element, *, attach: bool) -> None:
        """Apply a config-only device change by editing the persistent XML (like virsh edit)."""
        root = domxml.parse(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        )
        devices = root.find("devices")
        if devices is None:
            devices = etree.SubElement(root, "devices")
        if attach:
            if device.tag == "disk":
                target = device.find("target").get("dev")
                if domxml.find_disk(root, target) is not None:
                    raise BackendError(
                        "operation-failed",
                        f"cannot attach a disk to domain '{dom.name()}': target {target} "
                        "already exists",
                    )
            devices.append(device)
        else:
            match = self._match_in(root, device)
            if match is None:
                raise BackendError(
                    "operation-failed",
                    f"cannot detach from domain '{dom.name()}': no matching device in its "
                    "persistent configuration",
                )
            match.getparent().remove(match)
        self.connection.defineXML(domxml.to_text(root))

    @staticmethod
    def _match_in(root: etree._Element, device: etree._Element) -> etree._Element | None:
        if device.tag == "disk":
            return domxml.find_disk(root, device.find("target").get("dev"))
        mac = device.find("mac")
        found = domxml.find_interfaces(
            root, device.get("type"), mac.get("address") if mac is not None else None
        )
        return found[0] if len(found) == 1 else None

    def attach_disk(
        self,
        name: str,
        source: str,
        target: str,
        *,
        driver: str | None = None,
        subdriver: str | None = None,
        type: str = "file",
        mode: str | None = None,
        live: bool = True,
        config: bool = False,
        dac_norelabel: bool = False,
    ) -> None:
        disk = domxml.disk_element(
            source,
            target,
            driver=driver,
            subdriver=subdriver,
            type=type,
            mode=mode,
            dac_norelabel=dac_norelabel,
        )
        self._change_device(name, "attach a disk to", disk, _affect(live, config), attach=True)

    def detach_disk(
        self, name: str, target: str, *, live: bool = True, config: bool = False
    ) -> None:
        domxml.check_target(target)
        flags = _affect(live, config)
        root = self._do("read the disks of", name, lambda d: self._device_xml(d, flags))
        disk = domxml.find_disk(root, target)
        if disk is None:
            raise BackendError(
                "operation-failed", f"domain '{name}' has no disk with target '{target}'"
            )
        self._change_device(name, "detach a disk from", disk, flags, attach=False)

    def attach_interface(
        self,
        name: str,
        itype: str,
        source: str,
        *,
        mac: str | None = None,
        model: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None:
        iface = domxml.interface_element(itype, source, mac=mac, model=model)
        self._change_device(
            name, "attach an interface to", iface, _affect(live, config), attach=True
        )

    def detach_interface(
        self,
        name: str,
        itype: str,
        *,
        mac: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None:
        if mac:
            domxml.check_mac(mac)
        flags = _affect(live, config)
        root = self._do("read the interfaces of", name, lambda d: self._device_xml(d, flags))
        found = domxml.find_interfaces(root, itype, mac)
        with_mac = f" with MAC {mac}" if mac else ""
        if not found:
            raise BackendError(
                "operation-failed", f"domain '{name}' has no {itype} interface{with_mac}"
            )
        if len(found) > 1:
            raise BackendError(
                "invalid-arg",
                f"domain '{name}' has {len(found)} {itype} interfaces: give the MAC address "
                "(--mac) of the one to detach",
            )
        self._change_device(name, "detach an interface from", found[0], flags, attach=False)

    def disk_sources(self, name: str) -> list[str]:
        xml = self._do("read the disks of", name, lambda d: d.XMLDesc(0))
        return domxml.disk_sources(domxml.parse(xml))

    def interface_sources(self, name: str) -> list[tuple[str, str]]:
        xml = self._do("read the interfaces of", name, lambda d: d.XMLDesc(0))
        return domxml.interface_sources(domxml.parse(xml))

    # -- autostart ------------------------------------------------------------------------
    def get_autostart(self, name: str) -> bool:
        return bool(self._do("read the autostart flag of", name, lambda d: d.autostart()))

    def is_persistent(self, name: str) -> bool:
        """Whether the domain has a persistent definition (False: transient)."""
        return bool(self._do("inspect", name, lambda d: d.isPersistent()))

    def set_autostart(self, name: str, flag: bool) -> None:
        self._changing("set autostart on", name, lambda d: d.setAutostart(1 if flag else 0))

    # -- snapshots ------------------------------------------------------------------------
    def snapshot_create_as(
        self, name: str, snap_name: str | None = None, description: str | None = None
    ) -> str:
        root = etree.Element("domainsnapshot")
        if snap_name is not None:
            if not snap_name or "/" in snap_name or "\x00" in snap_name:
                raise BackendError("invalid-arg", f"invalid snapshot name {snap_name!r}")
            etree.SubElement(root, "name").text = snap_name
        if description:
            etree.SubElement(root, "description").text = description
        xml = domxml.to_text(root)
        return self._changing("snapshot", name, lambda d: d.snapshotCreateXML(xml, 0).getName())

    def _snap(self, dom: libvirt.virDomain, name: str, snap: str) -> libvirt.virDomainSnapshot:
        try:
            return dom.snapshotLookupByName(snap, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise BackendError(
                    "no-snapshot", f"domain '{name}' has no snapshot named '{snap}'"
                ) from None
            raise

    def snapshot_list(self, name: str) -> list[SnapshotInfo]:
        def snapshots(dom):
            out = []
            for snap in dom.listAllSnapshots(0):
                root = domxml.parse(snap.getXMLDesc(0))
                out.append(
                    SnapshotInfo(
                        name=snap.getName(),
                        creation_time=int(root.findtext("creationTime") or 0),
                        state=(root.findtext("state") or "").strip(),
                        description=root.findtext("description") or "",
                        current=bool(snap.isCurrent(0)),
                    )
                )
            out.sort(key=lambda s: (s.creation_time, s.name))
            return out

        return self._do("list the snapshots of", name, snapshots)

    def snapshot_revert(self, name: str, snap: str) -> None:
        self._changing("revert", name, lambda d: d.revertToSnapshot(self._snap(d, name, snap), 0))

    def snapshot_xml(self, name: str, snap: str) -> str:
        """The snapshot's XML description, with the domain definition a revert brings back."""
        return self._do(
            "read a snapshot of", name, lambda d: self._snap(d, name, snap).getXMLDesc(0)
        )

    def snapshot_delete(self, name: str, snap: str) -> None:
        self._changing("delete a snapshot of", name, lambda d: self._snap(d, name, snap).delete(0))

    # -- metadata -------------------------------------------------------------------------
    def get_metadata(self, name: str, ns_uri: str, *, config: bool = False) -> str | None:
        """Our element in <metadata>, qualified in ns_uri (default namespace); None if absent."""
        flags = _AFFECT_CONFIG if config else _AFFECT_CURRENT
        raw = self._do(
            "read the metadata of", name, lambda d: self._read_metadata(d, ns_uri, flags)
        )
        return _from_libvirt(raw, ns_uri) if raw else None

    @staticmethod
    def _read_metadata(dom: libvirt.virDomain, ns_uri: str, flags: int) -> str | None:
        """libvirt's string for our element (None if absent: libvirt_errors makes sure a
        garbage collection in between cannot erase the code that says so)."""
        try:
            return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ns_uri, flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise

    def set_metadata(
        self,
        name: str,
        xml_fragment: str | None,
        key: str,
        ns_uri: str,
        *,
        live: bool = True,
        config: bool = True,
    ) -> None:
        """Replace (or with None remove) our element; the fragment may be ns-qualified or not.

        ``live``+``config`` on an inactive domain means config only (libvirt refuses LIVE on a
        domain that is not running, and there is nothing live to change).
        """
        value = metadata.to_libvirt(xml_fragment, ns_uri) if xml_fragment is not None else None

        def setmeta(dom):
            flags = _affect(live and bool(dom.isActive()), config and bool(dom.isPersistent()))
            dom.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                value,
                key if value is not None else None,
                ns_uri,
                flags,
            )

        self._changing("set the metadata of", name, setmeta)

    # -- console --------------------------------------------------------------------------
    def open_console(self, name: str) -> libvirt.virStream:
        """A virStream connected to the domain's first console (the daemon relays it)."""

        def console(dom):
            stream = self.connection.newStream(0)
            try:
                dom.openConsole(None, stream, 0)
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                raise
            return stream

        return self._do("open the console of", name, console)

    # -- host -----------------------------------------------------------------------------
    def hostinfo(self) -> dict:
        conn = self.connection
        try:
            model, mem_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()[:8]
            info = {
                "backend": self.name,
                "uri": conn.getURI(),
                "hostname": conn.getHostname(),
                "hypervisor": conn.getType(),
                "hypervisor_version": _version(conn.getVersion()),
                "libvirt_version": _version(conn.getLibVersion()),
                "cpu_model": model,
                "memory_kib": int(mem_mib) * 1024,
                "cpus": int(cpus),
                "mhz": int(mhz),
                "numa_nodes": int(nodes),
                "sockets": int(sockets),
                "cores": int(cores),
                "threads": int(threads),
            }
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="read host information from") from None
        return info

    # -- migration ------------------------------------------------------------------------
    def migrate(
        self,
        name: str,
        dest_uri: str,
        *,
        live: bool = False,
        persistent: bool = False,
        undefine_source: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Migrate to another libvirt (virsh migrate: client-managed, Migrate3).

        Progress: while libvirt migrates on a worker thread, this thread polls jobInfo()
        every ``migrate_poll_interval`` seconds and calls ``progress(done, total)`` bytes.
        """
        if not isinstance(dest_uri, str) or not dest_uri or "\x00" in dest_uri:
            raise BackendError("invalid-arg", f"invalid destination URI {dest_uri!r}")
        if is_test_uri(self.uri) or is_test_uri(dest_uri):
            self._simulated_migrate(name, dest_uri, persistent, undefine_source, progress)
            return
        dom = self._dom(name)
        flags = (
            (libvirt.VIR_MIGRATE_LIVE if live else 0)
            | (libvirt.VIR_MIGRATE_PERSIST_DEST if persistent else 0)
            | (libvirt.VIR_MIGRATE_UNDEFINE_SOURCE if undefine_source else 0)
        )
        dconn = self._open(dest_uri)
        try:
            self._migrate_with_progress(dom, name, dconn, flags, progress)
        finally:
            self._forget(dom)  # it left (or stopped): not kept a moment longer
            with contextlib.suppress(libvirt.libvirtError):
                dconn.close()

    def _migrate_with_progress(self, dom, name, dconn, flags, progress) -> None:
        outcome: dict[str, BaseException] = {}

        def worker():
            try:
                dom.migrate3(dconn, {}, flags)
            except BaseException as exc:  # handed to the caller's thread below
                outcome["error"] = exc

        thread = threading.Thread(target=worker, name=f"migrate-{name}", daemon=True)
        thread.start()
        total = 0
        while thread.is_alive():
            thread.join(self._poll)
            if progress is None or not thread.is_alive():
                continue
            try:
                job = dom.jobInfo()
            except libvirt.libvirtError:
                continue
            if job[0] != libvirt.VIR_DOMAIN_JOB_NONE and job[3]:
                total = int(job[3])
                progress = report_progress(progress, int(job[4]), total)
        err = outcome.get("error")
        if isinstance(err, libvirt.libvirtError):
            raise self._err(err, "migrate", name, dom) from None
        if err is not None:
            raise err
        if progress is not None and total:
            report_progress(progress, total, total)

    def _simulated_migrate(
        self,
        name: str,
        dest_uri: str,
        persistent: bool,
        undefine_source: bool,
        progress: ProgressCallback | None,
    ) -> None:
        """Stand-in for migration between test-driver connections (the driver has none).

        What it does: the running domain's XML (with <metadata>, so owner and label travel)
        is started on the destination (defined there first with ``persistent``), then the
        source instance is destroyed (and undefined with ``undefine_source``).  No memory is
        transferred.  The destination connection stays open until close(), because a test
        driver's state lives only as long as a connection to it.
        """
        if not (is_test_uri(self.uri) and is_test_uri(dest_uri)):
            raise BackendError(
                "unsupported",
                f"cannot migrate domain '{name}' between {self.uri} and {dest_uri}: the test "
                "driver cannot migrate; only a simulated migration between two test:/// URIs "
                "is offered",
            )
        if dest_uri == self.uri and _test_node_file(dest_uri) is None:
            raise BackendError(
                "invalid-arg",
                f"cannot migrate domain '{name}' to {dest_uri}: it is the same test driver "
                "state as the source",
            )
        dom = self._dom(name)
        if not dom.isActive():
            raise BackendError("operation-failed", f"domain '{name}' is not running")
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
            total = int(dom.info()[2]) * 1024
        except libvirt.libvirtError as exc:
            raise self._err(exc, "migrate", name, dom) from None
        if progress is not None:
            progress = report_progress(progress, 0, total)
        with self._lock:
            dconn = self._peers.get(dest_uri)
        if dconn is None:
            dconn = self._open(dest_uri)
            with self._lock:
                self._peers[dest_uri] = dconn
        try:
            if persistent:
                dconn.defineXML(xml).create()
            else:
                dconn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise self._translate(
                exc, action="migrate", what=f"domain '{name}' to {dest_uri}"
            ) from None
        try:
            dom.destroy()
            if undefine_source and dom.isPersistent():
                dom.undefine()
        except libvirt.libvirtError as exc:
            raise self._err(exc, "migrate", name, dom) from None
        finally:
            self._forget(dom)
        if progress is not None:
            report_progress(progress, total, total)


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


@functools.lru_cache(maxsize=8192)
def _from_libvirt(raw: str, ns_uri: str) -> str:
    """metadata.from_libvirt, remembered: a pure function of libvirt's string, and a listing
    reads the same few fragments (one owner, one label) over and over."""
    return metadata.from_libvirt(raw, ns_uri)


class _Flight:
    """One listing, shared by the requests that asked before it started (see listing)."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: DomainListing | None = None


_UNREAD = object()  # DomainListing's "not read yet" (None is "no metadata")


class DomainListing:
    """One listing: its rows (``domains``), and per listed name the handle it was listed by.

    ``metadata(name, ns)`` and ``has_managed_save(name)`` answer for the domain that was
    listed under that name — its UUID, even if it has been renamed or replaced since — so
    a row's owner, label and "saved" state are always those of the row's own domain, and
    cost one libvirt call each instead of a lookup and a call (the metadata none, while a
    watching backend keeps it: libvirt_events)."""

    __slots__ = ("_backend", "_handles", "_meta", "_uuids", "domains")

    def __init__(self, backend: LibvirtBackend, domains: list[DomainInfo], handles: dict):
        self._backend, self.domains, self._handles = backend, domains, handles
        self._meta: dict[tuple[str, str], str | None] = {}  # read once per listing
        self._uuids: dict[str, str] | None = None  # name -> the listed row's UUID, when asked

    def _call(self, action: str, name: str, fn: Callable[[libvirt.virDomain], Any]) -> Any:
        dom = self._handles.get(name)
        if dom is None:  # not one of this listing's rows: the backend's own lookup
            return self._backend._do(action, name, fn)
        try:
            return fn(dom)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NoSuchDomain(name) from None
            raise self._backend._translate(exc, action=action, name=name) from None

    def metadata(self, name: str, ns_uri: str) -> str | None:
        """Like ``get_metadata(name, ns_uri)`` (the live element), for a listed domain: in a
        watching backend (svirtd's), the value kept since libvirt last announced a change of
        that domain (libvirt_events), else read once per listing."""
        if name not in self._handles:  # not a row of this listing: asked of the backend
            return self._read(name, ns_uri)
        key = (name, ns_uri)
        value = self._meta.get(key, _UNREAD)
        if value is _UNREAD:
            uuid = self._uuid_of(name)
            if uuid is None:
                value = self._read(name, ns_uri)
            else:  # kept across listings until libvirt says the domain changed
                value = self._backend.metadata_cache.get(
                    uuid, ns_uri, functools.partial(self._read, name, ns_uri)
                )
            self._meta[key] = value
        return value

    def _read(self, name: str, ns_uri: str) -> str | None:
        def get(dom):
            try:
                return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ns_uri, _AFFECT_CURRENT)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    return None
                raise

        raw = self._call("read the metadata of", name, get)
        return _from_libvirt(raw, ns_uri) if raw else None

    def _uuid_of(self, name: str) -> str | None:
        """The UUID of the row listed as ``name`` (None: not known yet, as a NamedListing's
        before its row is asked)."""
        uuids = self._uuids
        if uuids is None:
            uuids = self._uuids = {d.name: d.uuid for d in self.domains if getattr(d, "uuid", None)}
        return uuids.get(name)

    def prefetch_metadata(self, names: list[str], ns_uri: str) -> None:
        """Read the metadata of the listed ``names`` now, by the backend's row threads where
        they help (``LibvirtBackend.each``), so the rows made next find it read.  Errors are
        left to ``metadata`` itself, which asks again and reports them."""
        if not self._backend.overlaps(len(names)):
            return  # one after the other anyway: each row reads its own when it is made
        kept = self._backend.metadata_cache.holds
        wanted = [
            n
            for n in names
            if n in self._handles
            and (n, ns_uri) not in self._meta
            and not kept(self._uuid_of(n), ns_uri)  # kept (svirtd): no round trip to overlap
        ]

        def one(name):
            with contextlib.suppress(BackendError):
                self.metadata(name, ns_uri)

        for _ in self._backend.each(one, wanted):
            pass

    def has_managed_save(self, name: str) -> bool | None:
        """Like the backend's ``has_managed_save``, for a listed domain."""
        try:
            return bool(self._call("inspect", name, lambda d: d.hasManagedSaveImage(0)))
        except BackendError as exc:
            if exc.code == "no-domain":
                raise
            return None


#: the fewest rows asked by the row threads (LibvirtBackend.each); fewer go one by one
PARALLEL_FROM = 8
#: how many rows are asked at once over a connection to libvirtd
ROW_THREADS = 8
_pool: list = []  # [the row threads' executor], made on first use
_pool_lock = threading.Lock()


def _row_pool():
    with _pool_lock:
        if not _pool:
            from concurrent.futures import ThreadPoolExecutor

            _pool.append(ThreadPoolExecutor(ROW_THREADS, thread_name_prefix="svirt-rows"))
        return _pool[0]


def _transient_and_autostart(conn, base: int) -> tuple[set[str], set[str]]:
    """The UUIDs of the transient and of the autostarted domains of a listing (``base``: its
    listAllDomains flags).  The transient ones (usually none), not the persistent ones
    (usually all): each listed domain costs a UUIDString() call to be matched."""
    return listed_uuids(conn, base | _LIST_TRANSIENT), listed_uuids(conn, base | _LIST_AUTOSTART)


class ListedName:
    """A domain of a ``NamedListing`` before its row is asked: what the order (virsh's: the
    running ones by id, then the others by name) and the activity filter need."""

    __slots__ = ("id", "name")

    def __init__(self, name: str, dom_id: int | None):
        self.name, self.id = name, dom_id


class NamedListing(DomainListing):
    """``listing_by_name``'s answer: ``domains`` are ``ListedName``s, and ``info(name)`` asks
    a listed domain's row (its ``DomainInfo``) of the very handle it was listed by."""

    __slots__ = ("_base", "_flags")

    def __init__(self, backend: LibvirtBackend, domains: list, handles: dict, base: int):
        super().__init__(backend, domains, handles)
        self._base = base
        self._flags: tuple[set[str], set[str]] | None = None
        self._uuids = {}  # each row's UUID once its row is asked (info): its metadata is kept

    def info(self, name: str) -> DomainInfo | None:
        """The row of a listed domain; None if it is gone since it was listed."""
        dom = self._handles[name]
        backend = self._backend
        try:
            if self._flags is None:  # asked with the first row, not before the decision
                self._flags = _transient_and_autostart(backend.connection, self._base)
            transient, autostart = self._flags
            uuid = self._uuids[name] = dom.UUIDString()
            return backend._info(
                dom,
                persistent=uuid not in transient,
                autostart=uuid in autostart,
                uuid=uuid,
                name=name,
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise backend._translate(exc, action="list domains") from None
