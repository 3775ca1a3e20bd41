"""svirtd's long-lived objects are kept out of Python's cyclic garbage collector.

Why: the policy svirtd holds (UA/PA compiled, its indexes, the ACM policy, the service's
classes and caches) is hundreds of thousands of objects at a hosting provider's size, and
every one of them is scanned by each full collection: ~25 ms at 10k users / 100k VMs, ~95 ms
at 100k users (bench_load.py's policies), while the thread that triggered it holds the GIL,
so every request in flight waits that long.  Under bench_daemon.py's load the collector
made a full pass about once a run (6-50 ms, the 50-domain host) and took 2-4% of svirtd's
CPU with its young-generation passes.

So, once the service is built and before the first connection, the heap is collected once
and what survives is frozen (``gc.freeze``: moved to a generation the collector never
scans); reference counting still frees those objects when they are dropped.  What a
request allocates is freed by reference counting too, nearly all of it, so the young
generation is scanned every ``YOUNG_THRESHOLD`` allocations rather than every 700.

A reload replaces the policy, and a compiled policy has reference cycles (a dropped 10k-user
policy leaves ~77k objects only the collector can free).  Frozen, they would never be
freed, so after every reload the heap is unfrozen, collected and frozen again
(``refreeze``): the full pass the collector would have made sooner or later anyway, at a
moment svirtd chose, once per reload.
"""

from __future__ import annotations

import gc

#: allocations between two scans of the young generation (Python's default: 700)
YOUNG_THRESHOLD = 10_000

_settled = [False]  # settle() ran in this process: svirtd's main, not a test using a Server


def settle() -> int:
    """Collect once, freeze what is left, and raise the young generation's threshold.
    Returns how many objects are frozen."""
    _settled[0] = True
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    return gc.get_freeze_count()


def refreeze() -> int | None:
    """After a reload: let the collector see every object again, free the cycles the old
    policy left, and freeze what is still held.  Returns how many objects it freed (None:
    nothing is frozen in this process, so there is nothing to do)."""
    if not _settled[0]:
        return None
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    return freed


def status() -> dict:
    """For ``svirt-admin status``: the frozen objects, the threshold of each generation and
    how many passes each has made."""
    return {
        "frozen": gc.get_freeze_count(),
        "threshold": list(gc.get_threshold()),
        "collections": [s["collections"] for s in gc.get_stats()],
    }
