"""secured_virt.groupcommit: the one leader/waiters mechanism of the audit log's group commit and
the sVirt categories' batches.

What must hold (the module docstring): each submitter returns only once its own item was
applied (or failed), every item is applied exactly once, batch by batch in queue order; an
exception in ``apply`` reaches every submitter of that batch and the next batch still runs;
the lead passes to the first item queued during a batch; no waiter is left hanging, not even
one whose wait a signal interrupted.

The orderings are forced, not hoped for: ``apply`` blocks on an Event while the test queues
items, and ``queued`` waits until the queue really holds them.  The waits' timeouts only
guard against a hang (the thing under test); no assertion is about speed.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from secured_virt.groupcommit import GroupCommit, GroupCommitAborted

HANG = 60.0  # seconds: only a broken hand-over takes this long


class Item:
    def __init__(self, value, *, block: threading.Event | None = None, bad: bool = False):
        self.value = value
        self.block = block
        self.bad = bad
        self.result = None
        self.applied = 0


class Recorder:
    """An ``apply`` that records each batch, the thread that ran it, and never overlaps."""

    def __init__(self):
        self.batches: list[list] = []
        self.threads: list[str] = []
        self.running = False
        self.entered = threading.Semaphore(0)

    def __call__(self, batch: list[Item]) -> None:
        assert not self.running, "two batches applied at once"
        self.running = True
        try:
            self.batches.append([it.value for it in batch])
            self.threads.append(threading.current_thread().name)
            self.entered.release()
            for it in batch:
                if it.block is not None:
                    assert it.block.wait(HANG), "the test never released the batch"
            if any(it.bad for it in batch):
                raise ValueError(f"batch {[it.value for it in batch]} refused")
            for it in batch:
                it.applied += 1
                it.result = it.value * 2
        finally:
            self.running = False


class Batcher(GroupCommit):
    """A GroupCommit with its ``apply`` at hand, as its owners keep it (``AuditLog``)."""

    __slots__ = ("apply",)

    def __init__(self, apply):
        super().__init__()
        self.apply = apply


def queued(gc: GroupCommit, n: int) -> None:
    """Until ``n`` items wait in ``gc``'s queue (the batch being applied is no longer in it)."""
    deadline = time.monotonic() + HANG
    while len(gc._queue) < n:
        assert time.monotonic() < deadline, f"{len(gc._queue)} queued, expected {n}"
        time.sleep(0.001)


def submit_in_thread(gc: Batcher, item: Item, name: str, out: dict) -> threading.Thread:
    def run():
        try:
            out[name] = gc.submit(item, gc.apply)
        except BaseException as exc:  # handed to the test
            out[name] = exc

    t = threading.Thread(target=run, name=name)
    t.start()
    return t


def test_many_threads_each_item_applied_once_and_each_submitter_gets_its_own():
    rec = Recorder()
    gc = Batcher(rec)
    threads, per_thread = 32, 40
    start = threading.Barrier(threads)
    got: dict[int, list] = {}

    def worker(k: int) -> None:
        start.wait()
        mine = []
        for i in range(per_thread):
            item = Item(k * 1000 + i)
            back = gc.submit(item, gc.apply)
            assert back is item and item.applied == 1  # done when submit returns
            mine.append((item.value, item.result))
        got[k] = mine

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(HANG)
    assert not any(t.is_alive() for t in ts), "a submitter never returned"

    applied = [v for b in rec.batches for v in b]
    everything = [k * 1000 + i for k in range(threads) for i in range(per_thread)]
    assert sorted(applied) == everything  # every item exactly once
    for k in range(threads):  # each got its own result, in the order it submitted
        assert got[k] == [(k * 1000 + i, (k * 1000 + i) * 2) for i in range(per_thread)]
        positions = [applied.index(k * 1000 + i) for i in range(per_thread)]
        assert positions == sorted(positions)
    assert gc._queue == [] and not gc._leading  # idle again: the next submit leads at once
    assert gc.submit(Item(7), gc.apply).result == 14


def test_slow_leader_items_queued_meanwhile_form_the_next_batch_led_by_the_first():
    rec = Recorder()
    gc = Batcher(rec)
    out: dict = {}
    release_a, release_b = threading.Event(), threading.Event()
    a = submit_in_thread(gc, Item("a", block=release_a), "A", out)
    assert rec.entered.acquire(timeout=HANG)  # A leads and is inside apply
    later = []
    for n, name in enumerate("BCD", 1):  # queued in this order while A's batch runs
        item = Item(name.lower(), block=release_b if name == "B" else None)
        later.append(submit_in_thread(gc, item, name, out))
        queued(gc, n)
    release_a.set()
    assert rec.entered.acquire(timeout=HANG)  # the next batch started...
    a.join(HANG)
    assert not a.is_alive() and out["A"].result == "aa"  # ...and A went home: not its job
    assert rec.batches == [["a"], ["b", "c", "d"]]
    assert rec.threads == ["A", "B"]  # led by the first item queued meanwhile
    assert "C" not in out and "D" not in out  # still waiting for their batch
    release_b.set()
    for t in later:
        t.join(HANG)
    assert [out[n].result for n in "BCD"] == ["bb", "cc", "dd"]


def test_apply_raising_reaches_every_submitter_of_that_batch_and_the_next_batch_runs():
    rec = Recorder()
    gc = Batcher(rec)
    out: dict = {}
    release_a, release_b = threading.Event(), threading.Event()
    a = submit_in_thread(gc, Item(1, block=release_a), "A", out)
    assert rec.entered.acquire(timeout=HANG)
    failing = [
        submit_in_thread(gc, Item(2, block=release_b), "B", out),
    ]
    queued(gc, 1)
    failing.append(submit_in_thread(gc, Item(3, bad=True), "C", out))
    queued(gc, 2)
    failing.append(submit_in_thread(gc, Item(4), "D", out))
    queued(gc, 3)
    release_a.set()
    assert rec.entered.acquire(timeout=HANG)  # batch [2, 3, 4] is being applied
    e = submit_in_thread(gc, Item(5), "E", out)  # queued during the failing batch
    queued(gc, 1)
    release_b.set()
    for t in [a, *failing, e]:
        t.join(HANG)
    assert rec.batches == [[1], [2, 3, 4], [5]]
    assert out["A"].result == 2 and out["E"].result == 10
    errors = [out[n] for n in "BCD"]
    assert all(isinstance(x, ValueError) for x in errors), errors
    assert errors[0] is errors[1] is errors[2]  # the leader's error, in each of them
    assert "[2, 3, 4] refused" in str(errors[0])
    assert gc.submit(Item(6), gc.apply).result == 12  # nothing left hanging or leading


class Stop(BaseException):
    """Stands for KeyboardInterrupt/SystemExit (pytest treats the real ones specially)."""


def test_an_interrupted_leader_keeps_its_interrupt_and_its_waiters_are_told():
    def apply(batch):
        rec(batch)
        if any(it.value == "stop" for it in batch):
            raise Stop()

    rec = Recorder()
    gc = Batcher(apply)
    out: dict = {}
    release = threading.Event()
    a = submit_in_thread(gc, Item("go", block=release), "A", out)
    assert rec.entered.acquire(timeout=HANG)
    b = submit_in_thread(gc, Item("stop"), "B", out)
    queued(gc, 1)
    c = submit_in_thread(gc, Item("x"), "C", out)
    queued(gc, 2)
    release.set()
    for t in (a, b, c):
        t.join(HANG)
    assert out["A"].result == "gogo"
    assert isinstance(out["B"], Stop)  # the leader's own interrupt goes on in its thread
    assert isinstance(out["C"], GroupCommitAborted) and isinstance(out["C"].__cause__, Stop)
    assert gc.submit(Item(1), gc.apply).result == 2


def test_a_signal_while_waiting_does_not_strand_the_queue():
    """A handler raising in a waiting main thread: its item may be the next lead.  Leaving at
    once would leave every later submitter waiting for a leader that never comes; instead the
    waiter finishes its part (here: leads the next batch), then raises the interrupt."""
    assert threading.current_thread() is threading.main_thread()
    rec = Recorder()
    gc = Batcher(rec)
    out: dict = {}
    release = threading.Event()
    a = submit_in_thread(gc, Item("a", block=release), "A", out)
    assert rec.entered.acquire(timeout=HANG)

    class Interrupt(Exception):
        pass

    def handler(signum, frame):
        raise Interrupt()

    main = threading.get_ident()
    mine = Item("m")

    def poke():  # once the main thread waits in the queue: signal it, then finish A's batch
        queued(gc, 1)
        signal.pthread_kill(main, signal.SIGUSR1)
        time.sleep(0.05)  # let the handler run in the waiting main thread first (not asserted)
        release.set()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        poker = threading.Thread(target=poke)
        poker.start()
        with pytest.raises(Interrupt):
            gc.submit(mine, gc.apply)
    finally:
        signal.signal(signal.SIGUSR1, old)
    poker.join(HANG)
    a.join(HANG)
    assert mine.applied == 1 and rec.batches == [["a"], ["m"]]
    assert rec.threads[1] == "MainThread"  # it was handed the lead, and took it
    later = Item("z")
    t = submit_in_thread(gc, later, "Z", out)
    t.join(HANG)
    assert not t.is_alive() and later.applied == 1
