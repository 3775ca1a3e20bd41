"""What ``list`` shows of each domain, kept between listings until libvirt's events say the
domain changed (``LibvirtBackend.kept_listing``).

Why: a listing asks libvirt for the domains (listAllDomains), then for each one its UUID, its
state and sizes (info) and its id: ~250 calls for 50 domains.  In svirtd each call lets go of
the interpreter lock, and under load each such hand-off lets another request's thread in, so a
``list`` cost more than any other request of svirtd's mix; with libvirtd every call is also a
round trip.  Most of those answers do not change between two listings a few milliseconds
apart, and libvirt announces every change that matters to a listing as an event.  So svirtd
keeps them, as it keeps the domains' metadata (libvirt_events, whose events feed this too).

What is kept, per kind of listing (all domains, or the running ones only):

* **the members**: which domains (UUIDs) the listing has.  A domain joins or leaves only by an
  event (defined, undefined, started, stopped) or by a call of svirtd's own, which forgets
  the domain at once (``LibvirtBackend._changing``).  An event for a domain that is not a
  member drops the members, and the next listing asks libvirt for all of them again.
* **each member's row** (its ``DomainInfo``) and handle.  An event for a member, or svirtd's
  own change of it, forgets its row only: the next listing looks that domain up again by its
  UUID (its name may have changed), and leaves it out if it is gone or, in a listing of the
  running ones, no longer runs.

What changes without an event is asked every time or kept for a bounded time only:

* the autostart flag: one listAllDomains call for the autostarted domains, at every listing;
* a running domain's CPU time and memory (a balloon moves it): its row is asked again when
  older than ``VOLATILE_AGE``;
* everything: at most ``MAX_AGE`` (libvirt_events), the bound on what a lost event costs.

A listing whose rows would show two domains under one name (a rename whose event has not
arrived yet, while another domain's has) is not served from here: libvirt is asked for all of
them (a name must mean one domain: the rows' metadata and the policy's name patterns go by it).

A row or the members read while an event arrived are not kept: every event gets a sequence
number, and what a listing read after number N is kept only if no event since N concerns it
(for the members: no event since names a domain outside them).  An event that cannot name its
domain, the connection closing, or the events' source ending forget everything.

Only a ``list`` request's rows are served from here (it shows them; nothing is decided on a
row's state).  What decides on what runs (the sVirt categories' rebuild, realm quotas, the
host's accounts) asks libvirt every time (``LibvirtBackend.listing``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import libvirt

from .base import DomainInfo, virsh_order
from .libvirt_events import MAX_AGE

#: a running domain's row is asked again when it is older than this (seconds): its CPU time
#: and memory move without an event
VOLATILE_AGE = 1.0
#: over a daemon, a listing that would ask more rows than this asks for all of them in the
#: listing it shares with the requests of the moment (``LibvirtBackend.listing``): round trips
#: each request made alone cost more than one shared pass
SHARE_FROM = 4
#: how many events back a listing can look (one that read across more keeps nothing)
_RECENT = 4096

_LIST_ACTIVE = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
_LIST_AUTOSTART = libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART


def listed_uuids(conn, flags: int) -> set[str]:
    """The UUIDs of the domains ``conn.listAllDomains(flags)`` lists."""
    return {d.UUIDString() for d in conn.listAllDomains(flags)}


class Row:
    """A kept row: the domain's ``DomainInfo``, the handle it was read by, kept until when."""

    __slots__ = ("handle", "info", "until")

    def __init__(self, info: DomainInfo, handle: Any, until: float) -> None:
        self.info, self.handle, self.until = info, handle, until


_OLD = Row(None, None, float("-inf"))  # a member without a kept row: asked again


class KeptRows:
    """The members of each kind of listing and the rows of their domains (module docstring).
    ``live()``: whether events are being followed (the metadata cache's ``live``); nothing is
    served or kept otherwise."""

    def __init__(self, live: Callable[[], bool], clock: Callable[[], float] = time.monotonic):
        self._live = live
        self._clock = clock
        self._lock = threading.Lock()
        #: kind (True: all domains, False: the running ones) -> (member UUIDs, kept until)
        self._members: dict[bool, tuple[frozenset[str], float]] = {}
        self._rows: dict[str, Row] = {}
        self._seq = 0
        self._recent: deque[tuple[int, str | None]] = deque(maxlen=_RECENT)
        self.served = 0  # listings answered from kept members
        self.asked = 0  # rows asked of libvirt by those listings

    def until(self, info: DomainInfo, now: float) -> float:
        """How long ``info`` may be kept: a running domain's ``VOLATILE_AGE``, else
        ``MAX_AGE``."""
        return now + (MAX_AGE if info.id is None else VOLATILE_AGE)

    # -- events -------------------------------------------------------------------------------
    def forget(self, uuid: str) -> None:
        """An event for ``uuid`` (or svirtd's own change of it): its row goes, and so do the
        members of every listing it is not a member of (it may have joined)."""
        with self._lock:
            self._seq += 1
            self._recent.append((self._seq, uuid))
            self._rows.pop(uuid, None)
            for kind in [k for k, (m, _) in self._members.items() if uuid not in m]:
                del self._members[kind]

    def forget_all(self) -> None:
        """Everything goes, and nothing read before now is kept."""
        with self._lock:
            self._seq += 1
            self._recent.append((self._seq, None))
            self._rows.clear()
            self._members.clear()

    # -- a listing ----------------------------------------------------------------------------
    def begin(self, kind: bool) -> tuple[int, frozenset[str] | None, dict[str, Row]]:
        """(the sequence number to hand back to ``keep``, the kept members of listing
        ``kind`` or None, the kept rows of those members, however old)."""
        now = self._clock()
        with self._lock:
            token = self._seq
            kept = self._members.get(kind)
            if kept is None or kept[1] <= now or not self._live():
                return token, None, {}
            rows = self._rows
            return token, kept[0], {u: rows[u] for u in kept[0] if u in rows}

    def keep(self, kind: bool, token: int, members: frozenset[str], rows: dict[str, Row]) -> None:
        """Keep what a listing read after sequence number ``token``: each row of a domain no
        event has concerned since, and ``members`` if no event since names a domain outside
        them."""
        with self._lock:
            if not self._live() or self._seq - token >= _RECENT:
                return
            touched: set[str | None] = set()
            for seq, uuid in reversed(self._recent):
                if seq <= token:
                    break
                touched.add(uuid)
            if None in touched:
                return
            for uuid, row in rows.items():
                if uuid not in touched:
                    self._rows[uuid] = row
            if touched <= members:
                self._members[kind] = (members, self._clock() + MAX_AGE)

    def account(self) -> dict:
        """For ``svirt-admin status`` (service.metadata_kept.rows)."""
        return {"rows": len(self._rows), "listings": self.served, "rows_asked": self.asked}


def kept_listing(backend, include_inactive: bool, kept: KeptRows, listing_class):
    """``backend.listing(include_inactive)``'s answer, from the kept members and rows where
    they serve (the module docstring), asking libvirt for the rest; a ``listing_class``
    (the backend's ``DomainListing``, passed in: this module sits below the backend)."""
    kind = bool(include_inactive)
    token, members, rows = kept.begin(kind)
    now = kept._clock()
    stale = [] if members is None else [u for u in members if rows.get(u, _OLD).until <= now]
    if members is None or (len(stale) > SHARE_FROM and backend.overlaps(len(members))):
        # not kept, or (over a daemon) much of it changed: a listing as the backend makes it,
        # shared with the lists that ask at the same moment (one that starts after our token:
        # whatever it misses is an event after the token), then kept
        listing = backend.listing(include_inactive=include_inactive)
        now = kept._clock()
        fresh = {
            d.uuid: Row(d, listing._handles[d.name], kept.until(d, now)) for d in listing.domains
        }
        kept.keep(kind, token, frozenset(fresh), fresh)
        return listing
    conn = backend.connection
    base = 0 if include_inactive else _LIST_ACTIVE
    try:  # changed by virDomainSetAutostart, which sends no event: asked every time
        autostart = listed_uuids(conn, base | _LIST_AUTOSTART)
    except libvirt.libvirtError as exc:
        raise backend._translate(exc, action="list domains") from None
    stale = [(u, rows.get(u)) for u in stale]

    def ask(item):
        uuid, old = item
        try:
            if old is None:  # forgotten by an event: looked up again (a new name, or gone)
                dom = conn.lookupByUUIDString(uuid)
                persistent = bool(dom.isPersistent())
            else:  # only its age: the same handle, the same definition
                dom, persistent = old.handle, old.info.persistent
            info = backend._info(dom, persistent=persistent, autostart=uuid in autostart, uuid=uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return uuid, None  # gone: no longer a member
            raise
        return uuid, Row(info, dom, kept.until(info, now))

    try:
        asked = dict(backend.each(ask, stale))
    except libvirt.libvirtError as exc:
        raise backend._translate(exc, action="list domains") from None
    kept.served += 1
    kept.asked += len(asked)
    out, handles, left = [], {}, set(members)
    for uuid in members:
        row = asked[uuid] if uuid in asked else rows[uuid]
        if row is None or (not include_inactive and row.info.id is None):
            left.discard(uuid)  # gone, or (a listing of the running ones) stopped
            continue
        info = row.info
        if info.autostart != (uuid in autostart):
            info = dataclasses.replace(info, autostart=uuid in autostart)
        out.append(info)
        handles[info.name] = row.handle
    kept.keep(kind, token, frozenset(left), {u: r for u, r in asked.items() if r is not None})
    if len(handles) != len(out):
        # two rows under one name: a rename whose event is still on its way (A renamed away,
        # B renamed to A's old name, only B's event heard).  A name must mean one domain (the
        # rows' metadata and the policy's name patterns go by it): ask libvirt for all of them
        kept.forget_all()
        return backend.listing(include_inactive=include_inactive)
    out.sort(key=virsh_order)
    return listing_class(backend, out, handles)
