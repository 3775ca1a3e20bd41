"""A Chinese Wall refusal tells the refused tenant nothing about a competitor's VM.

The leak: bob's start of bob-build, refused because alice-web (AliceCorp, one conflict set with
BobCorp) runs, answered "held by running domain 'alice-web' (ACM:demo.hosting:dom_AliceCorp).
Stop 'alice-web' first" — another tenant's VM name and label, which bob's ``list`` never shows
him.  Now the running domain is named only to a caller who may see it; the audit keeps the
whole sentence for root.  Real libvirt test driver, the demo policy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import (
    OPS,
    ROOT,
    acm_service,
    host_config,
    ident,
    label_vm,
    last_decision,
    roles_pa,
    run,
)

from secured_virt.requests import EXIT_DENIED


def pa_xml(bob_sees=("bob-build",)) -> str:
    return roles_pa({"Alice": ("alice-web", "alice-db"), "Bob": bob_sees}, (*OPS, "dry-run"))


UA = (
    '<UserConfiguration><User name="alice"><UserRole role="Alice"/></User>'
    '<User name="bob"><UserRole role="Bob"/></User></UserConfiguration>'
)


def host(tmp_path, pa: str):
    cfg = host_config(tmp_path, pa=pa)
    Path(cfg.ua).write_text(UA)
    svc = acm_service(cfg)
    label_vm(svc, "alice-web", "dom_AliceCorp")
    label_vm(svc, "bob-build", "dom_BobCorp")
    assert run(svc, ident("alice", 5001), "start", domain="alice-web").ok
    return svc


@pytest.fixture
def svc(tmp_path):
    return host(tmp_path, pa_xml())


def test_the_refused_tenant_does_not_learn_the_competitors_vm(svc):
    r = run(svc, ident("bob", 5002), "start", domain="bob-build")
    assert r.status == EXIT_DENIED and r.check == "acm"
    assert "alice-web" not in r.message and "AliceCorp" not in r.message.split("type ")[0]
    assert "dom_AliceCorp" not in r.message
    assert "conflict set 'Competitors'" in r.message
    assert "held by a running domain you cannot see" in r.message
    # the audit, which root reads, keeps who held the wall
    rec = last_decision(svc.config, "start")
    assert rec["user"] == "bob" and rec["verdict"] == "denied"
    assert "'alice-web'" in rec["rule"] and "dom_AliceCorp" in rec["rule"]
    assert "you cannot see" not in rec["rule"]


def test_root_is_told_everything(svc):
    r = run(svc, ROOT, "start", domain="bob-build")
    assert r.status == EXIT_DENIED
    assert "held by running domain 'alice-web'" in r.message


def test_a_caller_who_may_list_the_holder_is_told_its_name(tmp_path):
    svc = host(tmp_path, pa_xml(bob_sees=("bob-build", "alice-web")))
    r = run(svc, ident("bob", 5002), "start", domain="bob-build")
    assert r.status == EXIT_DENIED
    assert "held by running domain 'alice-web'" in r.message


def test_root_acting_as_the_tenant_is_told_what_the_tenant_is(svc):
    as_bob = ROOT.__class__(
        uid=0, gid=0, user="root", groups=(0,), via="direct", requested_as="bob"
    )
    r = run(svc, as_bob, "start", domain="bob-build")
    assert r.status == EXIT_DENIED
    assert "alice-web" not in r.message


def test_dry_run_tells_the_tenant_no_more_than_a_refused_start(svc):
    r = run(svc, ident("bob", 5002), "dry-run", domain="bob-build")
    assert r.ok, r.message
    assert r.data["allowed"] is False
    text = repr(r.data)
    assert "alice-web" not in text and "dom_AliceCorp" not in text
    wall = [it for it in r.data["items"] if not it["allowed"]]
    assert wall and "you cannot see" in wall[0]["reason"]
    assert wall[0]["details"]["conflicting_domain"] is None
    assert wall[0]["details"]["conflicts"][0]["conflict_set"] == "Competitors"
    # root's dry-run names the holder
    assert "alice-web" in repr(run(svc, ROOT, "dry-run", domain="bob-build").data)
