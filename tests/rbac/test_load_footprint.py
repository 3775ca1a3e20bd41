"""Loading UA/PA holds one document tree at a time and leaves the GC as it found it (issue 18).

At 10k users / 100k VMs the two lxml trees, the builder and the model together peaked at
152 MB; PA's tree (an element per VM) is by far the largest, so it is now read into the
builder and dropped before UA is parsed.  The cyclic GC is paused for the build (it walked
millions of acyclic objects again and again: 0.6 s of a 100k-user load) and must come back on,
also when the files are refused.  Time and memory themselves are bench/bench_rbac.py's job.
"""

from __future__ import annotations

import gc
import sys

import pytest
from rbac_helpers import OPS, pa_doc, role, ua_doc, user

import rbac
from rbac import loader, xmlsafe

UA = ua_doc(user("alice", "web"))
PA = pa_doc(role("web", ["web1", "web2"], [6]))


def test_pa_tree_is_gone_before_ua_is_parsed(monkeypatch):
    trees: dict = {}
    alive_when_ua_parsed = []
    real = xmlsafe.parse

    def parse(data, name, **kw):
        if name == "ua.xml":
            # only this dict and getrefcount's argument still refer to PA's tree
            alive_when_ua_parsed.append(sys.getrefcount(trees["pa.xml"]) > 2)
        tree = real(data, name, **kw)
        trees[name] = tree
        return tree

    monkeypatch.setattr(loader.xmlsafe, "parse", parse)
    pol = rbac.loads(UA, PA, OPS)
    assert pol.decide("alice", 6, "web2").allowed
    assert alive_when_ua_parsed == [False]


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_is_restored_after_a_load_and_after_a_refusal(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        rbac.loads(UA, PA, OPS)
        assert gc.isenabled() is enabled
        with pytest.raises(rbac.PolicyError):
            rbac.loads(UA, pa_doc("<Bogus/>"), OPS)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_both_files_still_reported_together_with_one_tree_at_a_time():
    with pytest.raises(rbac.PolicyError) as ei:
        rbac.loads(b"<UserConfiguration>", pa_doc("<Bogus/>"), OPS)
    assert {x.file for x in ei.value.errors} == {"ua.xml", "pa.xml"}
