"""Issue 14 item 8: undefine + define of the same UUID dropped the mandatory label.

The attack: ``dumpxml --inactive``, ``undefine``, ``define`` the same XML (our metadata is
stripped from every caller's XML), ``start`` — the VM ran unlabelled (``__UNLABELED__`` may run
under the demo policy) beside its Chinese Wall competitor.  Now every label written to a domain
is recorded by UUID in the ACM state directory (shype/bound.py) and comes back with a define
or create of that UUID; since the label carries its tenant's STE types, only root or the VM's
recorded owner may define that UUID again.  Real libvirt test driver, the demo policy.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import (
    ROOT,
    acm_service,
    audit_records,
    host_config,
    ident,
    label_vm,
    pa_xml,
    run,
)

from secured_virt.requests import EXIT_DENIED, EXIT_OK

UUID = "6f1b1a52-0f6e-4f4e-9d7a-1b0c8e3d2a11"
NEW = f"""<domain type='test'><name>alice-new</name><uuid>{UUID}</uuid>
<memory>1024</memory><os><type>hvm</type></os></domain>"""


@pytest.fixture
def svc(tmp_path):
    s = acm_service(host_config(tmp_path, pa=pa_xml(("alice-new", "bob-build"))))
    alice = ident("alice")
    assert run(s, alice, "define", xml=NEW, file="new.xml").status == EXIT_OK
    label_vm(s, "alice-new", "dom_AliceCorp")
    label_vm(s, "bob-build", "dom_BobCorp")
    assert run(s, ROOT, "start", domain="bob-build").ok  # the competitor runs
    return s


def redefine(s, who, xml):
    return run(s, who, "define", xml=xml, file="saved.xml")


def test_undefine_then_define_brings_the_label_back_and_the_wall_holds(svc):
    alice = ident("alice")
    saved = run(svc, alice, "dumpxml", domain="alice-new", inactive=True).data["xml"]
    assert run(svc, alice, "undefine", domain="alice-new").ok
    r = redefine(svc, alice, saved)
    assert r.status == EXIT_OK, r.message
    assert svc.acm.vm_label("alice-new").endswith(":dom_AliceCorp")
    r = run(svc, alice, "start", domain="alice-new")
    assert r.status == EXIT_DENIED and r.check == "acm" and "Competitors" in r.message
    assert svc.backend.lookup("alice-new").id is None


def test_the_record_is_root_only_and_names_the_label(svc, tmp_path):
    path = tmp_path / "acm" / "uuid-labels.json"
    st = path.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert "dom_AliceCorp" in path.read_text() and UUID in path.read_text()


def test_another_tenant_may_not_take_the_uuid(svc):
    alice, bob = ident("alice"), ident("bob", uid=5002)
    saved = run(svc, alice, "dumpxml", domain="alice-new", inactive=True).data["xml"]
    assert run(svc, alice, "undefine", domain="alice-new").ok
    r = redefine(svc, bob, saved)
    assert r.status == EXIT_DENIED, r.message
    assert "stays bound to the UUID" in r.message and "Leave out <uuid>" in r.message
    assert run(svc, ROOT, "dominfo", domain="alice-new").status != EXIT_OK  # not defined
    outcomes = [x["outcome"] for x in audit_records(svc.config) if x["type"] == "outcome"]
    assert any("bound to the UUID" in o for o in outcomes)  # the refusal is on record
    # root may, and the label comes back with it (and alice's ownership)
    r = redefine(svc, ROOT, saved)
    assert r.status == EXIT_OK, r.message
    assert svc.acm.vm_label("alice-new").endswith(":dom_AliceCorp")
    assert svc._meta("alice-new").owner == "alice"


def test_create_of_a_transient_with_the_uuid_gets_the_label_too(svc):
    alice = ident("alice")
    assert run(svc, alice, "undefine", domain="alice-new").ok
    r = run(svc, alice, "create", xml=NEW, file="new.xml")
    assert r.status == EXIT_DENIED and "Competitors" in r.message  # AliceCorp vs BobCorp
    assert run(svc, ROOT, "destroy", domain="bob-build").ok
    r = run(svc, alice, "create", xml=NEW, file="new.xml")
    assert r.status == EXIT_OK, r.message
    assert svc.acm.vm_label("alice-new").endswith(":dom_AliceCorp")


def test_an_unreadable_record_fails_closed(svc, tmp_path):
    alice = ident("alice")
    assert run(svc, alice, "undefine", domain="alice-new").ok
    path = tmp_path / "acm" / "uuid-labels.json"
    os.chmod(path, 0o666)  # someone else could have written it: not trusted
    r = redefine(svc, alice, NEW)
    assert r.status != EXIT_OK and "cannot be read" in r.message
