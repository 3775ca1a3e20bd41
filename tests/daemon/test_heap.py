"""svirtd keeps its long-lived objects out of the cyclic collector (daemon/heap.py): frozen
once it is built, unfrozen, collected and frozen again after every reload, so a reloaded
policy's cycles are still freed.

The unit tests run in a child interpreter: freezing pytest's own heap would change how every
later test's garbage is collected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from svtd_helpers import running_svirtd

from secured_virt import client
from secured_virt.daemon import heap

REPO = Path(__file__).resolve().parents[2]


def _child(code: str) -> dict:
    prologue = f"import gc, json, sys, weakref\nsys.path.insert(0, {str(REPO)!r})\n"
    out = subprocess.run(
        [sys.executable, "-I", "-c", prologue + code],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_settle_freezes_what_start_up_left_and_scans_the_young_less_often():
    got = _child(
        "from secured_virt.daemon import heap\n"
        "kept = [[i] for i in range(1000)]  # lists: always tracked by gc\n"
        "frozen = heap.settle()\n"
        "print(json.dumps({'frozen': frozen, 'count': gc.get_freeze_count(),\n"
        "                  'threshold': gc.get_threshold(),\n"
        "                  'kept_frozen': not {id(k) for k in kept}\n"
        "                                 & {id(o) for o in gc.get_objects()}}))\n"
    )
    assert got["frozen"] == got["count"] >= 1000
    assert got["threshold"][0] == heap.YOUNG_THRESHOLD
    assert got["kept_frozen"]  # frozen objects are not in the generations gc scans


def test_a_frozen_cycle_is_freed_only_by_refreeze():
    """What a reload drops (the old policy) was frozen at start: a full collection does not
    see it, refreeze does."""
    got = _child(
        "from secured_virt.daemon import heap\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "gone = weakref.ref(a)\n"
        "heap.settle()\n"
        "del a, b\n"
        "gc.collect()\n"
        "after_collect = gone() is not None\n"
        "freed = heap.refreeze()\n"
        "print(json.dumps({'after_collect': after_collect, 'after_refreeze': gone() is not None,\n"
        "                  'freed': freed, 'frozen': gc.get_freeze_count()}))\n"
    )
    assert got["after_collect"], "a frozen cycle must survive an ordinary collection"
    assert not got["after_refreeze"], "refreeze must free the cycle the reload dropped"
    assert got["freed"] >= 2 and got["frozen"] > 0


def test_refreeze_does_nothing_where_nothing_was_settled():
    """A Server used inside another program (a test, a tool) never freezes that program."""
    import gc

    before = gc.get_freeze_count()
    assert heap.refreeze() is None
    assert gc.get_freeze_count() == before


@pytest.mark.integration
def test_svirtd_runs_frozen_and_refreezes_on_reload():
    with running_svirtd() as env:
        first = client.admin_status(env.socket).data["daemon"]["heap"]
        assert first["frozen"] > 1000 and first["threshold"][0] == heap.YOUNG_THRESHOLD
        reply = client.admin_reload(env.socket)
        assert reply.ok, reply.message
        after = client.admin_status(env.socket).data["daemon"]["heap"]
        # the reload's full pass over the unfrozen heap, and the heap frozen again
        assert after["collections"][2] > first["collections"][2]
        assert after["frozen"] > 1000
