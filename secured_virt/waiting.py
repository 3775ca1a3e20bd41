"""Waiting for work others do on this thread's behalf: a thread says so, and whoever limits
how many threads run (svirtd's admission queue, daemon/admission.py) lets another run meanwhile.

Why: svirtd lets a bounded number of requests into the service at once, so that they share
its one CPU in turns rather than all at once.  A list request that finds a listing of libvirt
already under way waits for it and then takes part in the next one, which every list that
arrived meanwhile shares (LibvirtBackend.listing): the more lists join, the fewer passes over
libvirt, and each pass costs a round trip per domain when libvirt is a daemon.  A request
waiting there uses no CPU, so counting it as running only kept other lists out of the pass
they could have shared: on the same 50 domains inside libvirtd, with 16 requests let in at
once, svirtd served a fifth to a quarter fewer requests a second than with no limit at all
(bench/RESULTS.md, "svirtd under load").  With the listing's waits not counted, it serves as
many as with no limit, and the tail stays as short as with the limit.

Why only there: the audit's group commit (groupcommit.py) is such a wait too, but not counting
its waiters let in so many requests that the tail came back: the limit then bounded almost
nothing (the same bench: the slowest 1% at 2.4-2.5 times the mean latency, as with no limit,
against 1.8-2.1 with the limit).

A thread about to wait calls ``with waiting.for_others():``.  Nothing happens unless the
thread has a *turn keeper* (:func:`keeper`), which svirtd's admission queue sets for the
duration of each request: then the keeper's ``step_out()`` runs before the wait (the request
stops counting) and ``step_in()`` after it (it counts again).  Imports nothing of ours, so
every room may use it (SHARED in tests/architecture/test_rooms.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol

__all__ = ["for_others", "keeper"]


class TurnKeeper(Protocol):
    def step_out(self) -> None: ...

    def step_in(self) -> None: ...


_local = threading.local()


def keeper(k: TurnKeeper | None) -> None:
    """Set (or, with None, clear) this thread's turn keeper."""
    _local.keeper = k


@contextlib.contextmanager
def for_others() -> Iterator[None]:
    """Around a wait for work others do on this thread's behalf (see the module docstring)."""
    k = getattr(_local, "keeper", None)
    if k is None:
        yield
        return
    k.step_out()
    try:
        yield
    finally:
        k.step_in()
