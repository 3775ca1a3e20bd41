"""Admission: at most ``limit`` requests in the service at once; the others wait their turn,
each caller's in arrival order and the callers in turn.

Why: svirtd runs its Python on one CPU (daemon.cpu), so when more requests arrive than that CPU
can serve, they queue somewhere. Without a limit they all queue inside the service at once,
sharing the CPU by turns at the interpreter lock. Those turns go in no order: every libvirt
call, socket call and audit sync lets go of the lock, and whichever thread gets it next runs. A
request that passes through many such points (a list that asks libvirt for 50 domains made ~250
libvirt calls; a start waits for two audit syncs) loses a turn at each of them, to every
request present, so with 50 clients the slowest 1% took 2.6-2.9 times the mean. With a limit,
the rest wait here in arrival order, and a request let in competes with only ``limit - 1``
others until it is done. On the benchmark's closed load of 50 clients (bench/RESULTS.md,
"svirtd under load") about the same requests/s came with a 99th percentile of 1.8-2.1 times the
mean, with the domains in svirtd's process or inside libvirtd: the wait is the same on average
and spread evenly. The limit does not make a request cheaper; it makes the queue fair.

A list waiting for a listing that other lists share (secured_virt.waiting) does not count
while it waits: it needs no CPU, and keeping other lists out of that listing cost a fifth of
the throughput on domains inside libvirtd.

A request that has been in the service for ``slow`` seconds stops counting against the limit:
it is waiting for something other than the CPU (a hypervisor call that takes its time, a VM
that boots, a password being typed at a prompt, a slow front-end reading streamed rows), and
nothing queued behind it should wait for that.  So a caller can hold up the queue for at most
``slow``, however many requests it keeps open; after that its requests run on, uncounted, and
finish as they would have.

Turns are per caller (svirtd's peer uid; a remote front-end's session user): a freed slot
goes to the oldest request of the caller whose turn it is, and that caller then goes to the
back of the line.  One caller, however many requests it queues (a script over hundreds of
VMs, a tenant flooding svirtd to slow the others down), delays another caller's request by
at most one of its own per turn; with one caller, or with callers that each have one request
waiting, it is first come, first served.

``limit`` 0 admits everyone at once (no queue): what svirtd did before.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from typing import Any

from secured_virt import waiting

__all__ = ["Admission"]

#: how many of the last waits ``status`` summarises
RECENT = 1024


class _Waiter:
    """A request queued for a slot: ``wake`` is held until the slot is granted (``ticket``)."""

    __slots__ = ("queued", "ticket", "wake")

    def __init__(self, queued: float) -> None:
        self.queued = queued
        self.ticket: int | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class Admission:
    """``with admission:`` around a request's run in the service (see the module docstring).

    Used as a context manager by the request's own thread, ``with admission(uid):``:
    ``__enter__`` returns once the request may run, ``__exit__`` gives its slot to the next
    waiting request in turn.  Each thread's ticket is kept in a thread-local, so one object
    serves every thread."""

    def __init__(self, limit: int, slow: float, clock=time.monotonic):
        if limit < 0 or slow <= 0:
            raise ValueError("limit must be >= 0 and slow > 0")
        self.limit = limit
        self.slow = slow
        self._clock = clock
        self._lock = threading.Lock()
        #: counted requests: ticket -> when it was let in (oldest first: dicts keep order)
        self._active: dict[int, float] = {}
        #: the waiting requests, a queue per caller (uid), and the callers in their turn order
        self._queues: dict[object, collections.deque[_Waiter]] = {}
        #: (a caller is in ``_turns`` exactly while it has a queue: nobody waits when it is empty)
        self._turns: collections.deque[object] = collections.deque()
        self._tickets = itertools.count(1)
        self._mine = threading.local()
        self._admitted = 0  # requests let in, at once or after waiting
        self._queued = 0  # of those, the ones that had to wait
        self._outlived = 0  # requests that stopped counting after ``slow``
        self._waits: collections.deque[float] = collections.deque(maxlen=RECENT)

    # -- the request's side -------------------------------------------------------------------
    def __call__(self, who: object = None) -> Admission:
        """``with admission(uid):`` - the caller whose turn the request waits for (see
        :meth:`enter`); ``with admission:`` is one anonymous caller."""
        self._mine.who = who
        return self

    def __enter__(self) -> Admission:
        who, self._mine.who = getattr(self._mine, "who", None), None
        self._mine.ticket = self.enter(who)
        if self.limit:
            waiting.keeper(self)  # its wait for a shared listing does not count (step_out/in)
        return self

    def __exit__(self, *exc: object) -> None:
        waiting.keeper(None)
        self.leave(self._mine.ticket)

    def step_out(self) -> None:
        """This thread's request waits for work others do for it (a listing others share:
        secured_virt.waiting says why that one): it stops counting, and the next waiting
        request in turn may run meanwhile."""
        ticket, self._mine.ticket = self._mine.ticket, None
        if ticket is not None:
            with self._lock:
                self._leave_locked(ticket)

    def step_in(self) -> None:
        """That wait is over: the request counts again, at once, even above the limit (it was
        let in already; the next request waits until enough have left)."""
        now = self._clock()
        with self._lock:
            ticket = next(self._tickets)
            self._active[ticket] = now
        self._mine.ticket = ticket

    def enter(self, who: object = None) -> int | None:
        """Wait for a slot; the ticket to hand to :meth:`leave` (None: no limit).

        ``who``: the caller (svirtd passes the peer's uid).  Each caller's requests wait in
        arrival order, and the callers take turns: a freed slot goes to the oldest request of
        the caller whose turn it is, and that caller goes to the back of the line.  So a
        caller with many requests waiting (a script over hundreds of VMs, or a tenant
        flooding svirtd) delays another caller's request by at most one of its own per turn,
        not by all of them."""
        if not self.limit:
            return None
        now = self._clock()
        with self._lock:
            self._admitted += 1
            if not self._turns and len(self._active) < self.limit:
                ticket = next(self._tickets)
                self._active[ticket] = now
                return ticket
            me = _Waiter(now)
            mine = self._queues.get(who)
            if mine is None:
                mine = self._queues[who] = collections.deque()
                self._turns.append(who)
            mine.append(me)
            self._queued += 1
        try:
            return self._wait(me)
        except BaseException:  # never leave a slot or a queue place behind
            with self._lock:
                if me.ticket is None:
                    self._drop_locked(who, me)
                else:
                    self._leave_locked(me.ticket)
            raise

    def leave(self, ticket: int | None) -> None:
        """The request is done: its slot goes to the next waiting request in turn."""
        if ticket is None:
            return
        with self._lock:
            self._leave_locked(ticket)

    # -- internals ----------------------------------------------------------------------------
    def _wait(self, me: _Waiter) -> int:
        """Until ``me`` is granted a slot: by a request that leaves, or, when the oldest
        counted request outlives ``slow``, by this thread itself (whichever waiter wakes
        first lets in as many of the queue's head as there are slots)."""
        while True:
            with self._lock:
                if me.ticket is not None:
                    return me.ticket
                oldest = next(iter(self._active.values()), None)
            # until the oldest counted request has been in for ``slow`` (at least 1 ms)
            timeout = self.slow if oldest is None else oldest + self.slow - self._clock()
            if me.wake.acquire(timeout=max(timeout, 0.001)):
                return me.ticket  # set before the lock was released
            with self._lock:
                self._expire_locked(self._clock())
                self._grant_locked()

    def _leave_locked(self, ticket: int) -> None:
        if self._active.pop(ticket, None) is not None:  # still counted: its slot is free
            self._grant_locked()

    def _expire_locked(self, now: float) -> None:
        """Stop counting the requests in for ``slow`` or longer (oldest first)."""
        while self._active:
            ticket, since = next(iter(self._active.items()))
            if now - since < self.slow:
                return
            del self._active[ticket]
            self._outlived += 1

    def _drop_locked(self, who: object, me: _Waiter) -> None:
        """``me`` leaves the line without a slot."""
        mine = self._queues[who]
        mine.remove(me)
        if not mine:
            del self._queues[who]
            self._turns.remove(who)

    def _grant_locked(self) -> None:
        """While there are free slots: the oldest request of the caller whose turn it is."""
        now = None
        while self._turns and len(self._active) < self.limit:
            who = self._turns.popleft()
            mine = self._queues[who]
            w = mine.popleft()
            if mine:
                self._turns.append(who)  # its next request waits for the others' turns
            else:
                del self._queues[who]
            now = self._clock() if now is None else now
            w.ticket = next(self._tickets)
            self._active[w.ticket] = now
            self._waits.append(now - w.queued)
            w.wake.release()

    # -- svirtd's status ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For ``svirt-admin status`` (daemon.admission): the limit, how many requests run and
        wait now, and how long the last ones that waited did."""
        with self._lock:
            out: dict[str, Any] = {
                "limit": self.limit,
                "slow_ms": round(self.slow * 1000, 3),
                "running": len(self._active),
                "waiting": sum(len(q) for q in self._queues.values()),
                "callers_waiting": len(self._queues),
                "admitted": self._admitted,
                "waited": self._queued,
                "outlived_slow": self._outlived,
            }
            waits = sorted(self._waits)
        if waits:
            out["wait_ms_p50"] = round(waits[len(waits) // 2] * 1000, 3)
            out["wait_ms_p99"] = round(waits[min(len(waits) - 1, len(waits) * 99 // 100)] * 1000, 3)
            out["wait_ms_max"] = round(waits[-1] * 1000, 3)
        return out
