"""Group commit: threads that queue work at the same moment share one application of it.

Why: some work costs the same for one item as for fifty.  The audit log pays a write and an
``fdatasync`` per append; the sVirt categories pay an flock, a state check and a save of the
record file per change.  Under svirtd's load fifty threads each paying that in turn made the
disk or the lock the bottleneck.  With :class:`GroupCommit` the first thread to queue becomes
the *leader*: it takes everything queued so far (its own item first) and calls ``apply(batch)``
once; the others wait.  When ``apply`` returns, the leader wakes each thread of its batch and
hands the lead to the first item queued meanwhile, whose thread takes the next batch.

What each caller of :meth:`GroupCommit.submit` can rely on:

* it returns only once ``apply`` has run on a batch holding its item, so whatever ``apply``
  promises for an item (on disk, saved) holds when ``submit`` returns: durability is not
  traded for throughput, only the cost is shared;
* every item is applied exactly once, batches one at a time, and within a batch in the order
  the items were queued (the leader's own item first);
* ``apply`` reports per item on the items themselves (a record's result or error); if it
  *raises*, every submitter of that batch, the leader included, gets that exception from
  ``submit`` (the same object), and the next batch runs as usual.  A ``BaseException`` that
  is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) goes on in the leader's own
  thread; the waiters of its batch get :class:`GroupCommitAborted` instead, so no request
  thread is handed an interrupt that was not its own;
* no thread waits on a lock nobody will release: every waiter has a lock of its own, held
  from the start and released exactly once, by the leader of its batch (done) or by the leader
  before that (its turn to lead), always in a ``finally``.  One lock per waiter wakes exactly
  the thread concerned; a shared condition woke all fifty waiting threads at every batch, and
  their scramble for the GIL cost more than the writes.  A thread that finds nobody leading
  leads at once and makes no lock at all (one thread alone pays two list appends and three
  short critical sections of the queue's lock).  A signal whose handler raises in a
  waiting thread (only the main thread runs handlers) does not end the wait, because the
  waiter may be the one handed the next lead, which nobody else would take: the exception is
  raised once the waiter's own item is done.

The leader's thread does the work of the others while its own caller waits; the hand-over
bounds that to one batch, never to "until the queue is empty".  Nothing here knows what an
item is: ``apply`` does, and sets its results on the items.  Imports nothing of ours, so every
room may use it (SHARED in tests/architecture/test_rooms.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit", "GroupCommitAborted"]

T = TypeVar("T")


class GroupCommitAborted(RuntimeError):
    """The leader of this item's batch was stopped by an interrupt (its ``__cause__``) while
    applying it: the item may or may not have been applied."""


class _Waiter:
    """A thread waiting for its item's batch.  ``wake`` is held from the start and released
    exactly once, after ``error`` and ``lead`` are set and ``woken`` is True.  A thread that
    leads at once has none (it never waits; the queue holds None in its place)."""

    __slots__ = ("error", "lead", "wake", "woken")

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.lead = False
        self.woken = False
        self.wake = threading.Lock()
        self.wake.acquire()

    def wait(self) -> BaseException | None:
        """Until woken; an exception raised meanwhile by a signal handler is returned, not
        raised (module docstring: this waiter may have been handed the lead)."""
        interrupted = None
        while True:
            try:
                self.wake.acquire()
                return interrupted
            except BaseException as exc:
                interrupted = exc
                if self.woken:  # released already (perhaps acquired too): never again
                    return interrupted


class GroupCommit(Generic[T]):
    """``submit(item, apply)`` from any thread; ``apply(batch)`` runs in one thread at a time,
    on the items queued together (see the module docstring).

    Why ``apply`` comes with each ``submit`` rather than to the constructor: the owner (an
    ``AuditLog``) keeps its GroupCommit, and a GroupCommit keeping the owner's bound method
    would be a reference cycle, so a forgotten owner would wait for the cyclic collector
    instead of going at once (the audit log's kept fd, and with it a busy file system).  Every
    ``submit`` to one GroupCommit passes the same ``apply``; the leader's runs."""

    __slots__ = ("_leading", "_lock", "_queue", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[T] = []  # the items of the next batch, in order
        self._waiters: list[_Waiter | None] = []  # their threads (None: the one leading)
        self._leading = False  # a thread leads a batch or has been handed the lead

    def submit(self, item: T, apply: Callable[[list[T]], object]) -> T:
        """Queue ``item``; return it once ``apply`` ran on a batch holding it (``apply`` sets
        its results on it).  Raises what ``apply`` raised for that batch."""
        with self._lock:
            me = _Waiter() if self._leading else None
            self._queue.append(item)
            self._waiters.append(me)
            self._leading = True
        if me is None:  # nobody was leading: we do, at once (no lock of our own to wait on)
            error = self._lead(None, apply)
        else:  # the leader of our batch wakes us: done, or our turn to lead
            interrupted = me.wait()
            try:
                error = self._lead(me, apply) if me.lead else me.error
            finally:
                if interrupted is not None:
                    raise interrupted
        if error is not None:
            raise error
        return item

    def _lead(self, me: _Waiter | None, apply: Callable) -> BaseException | None:
        """As the leader: apply everything queued, then wake the batch's other threads and
        hand the lead to the first item queued meanwhile (or give it up when none is),
        whatever happened.  Returns the batch's error (raises the leader's interrupt)."""
        with self._lock:
            batch, self._queue = self._queue, []
            waiters, self._waiters = self._waiters, []
        error: BaseException | None = None
        try:
            apply(batch)
        except Exception as exc:  # every submitter of the batch gets it
            error = exc
        except BaseException as exc:  # an interrupt: the leader's own; the waiters learn of it
            error = GroupCommitAborted(f"the batch was interrupted by {exc!r}")
            error.__cause__ = exc
            raise
        finally:
            with self._lock:
                nxt = self._waiters[0] if self._waiters else None
                if nxt is None:
                    self._leading = False
            for w in waiters:
                if w is not None and w is not me:
                    w.error = error
                    w.woken = True
                    w.wake.release()
            if nxt is not None:  # queued while we led, so it has a lock of its own
                nxt.lead = True
                nxt.woken = True
                nxt.wake.release()
        return error
