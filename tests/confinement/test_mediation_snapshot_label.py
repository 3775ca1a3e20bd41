"""Issue 14 item 6: snapshot-revert restored an old label.

The attack: a VM snapshotted while labelled dom_AliceCorp is relabelled dom_BobCorp (it moved to
Bob); a BobCorp guest starts beside it; reverting to the old snapshot brought back the
snapshot's metadata, so the VM ran as AliceCorp beside BobCorp, though the Chinese Wall had
been checked with its current label.  Now the revert is mediated like a start from the
snapshot's definition under the *current* label, and the reverted domain is given that label
back before anyone else is checked.  Real libvirt test driver (its revert restores the
snapshot's metadata, as QEMU's does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import (
    ROOT,
    acm_service,
    host_config,
    ident,
    label_vm,
    last_decision,
    run,
)

from secured_virt.requests import EXIT_DENIED, EXIT_OK


@pytest.fixture
def svc(tmp_path):
    s = acm_service(host_config(tmp_path))
    # alice-db runs as AliceCorp and is snapshotted; then it moves to Bob (relabelled)
    label_vm(s, "alice-db", "dom_AliceCorp")
    assert run(s, ROOT, "start", domain="alice-db").ok
    assert run(s, ROOT, "snapshot-create-as", domain="alice-db", snapshot="old").ok
    assert run(s, ROOT, "destroy", domain="alice-db").ok
    label_vm(s, "alice-db", "dom_BobCorp")
    return s


def running_labels(s) -> dict[str, str]:
    return {
        d.name: s.acm.vm_label(d.name).rsplit(":", 1)[-1]
        for d in s.backend.list_domains(include_inactive=False)
    }


def test_revert_keeps_the_current_label_and_no_wall_is_broken(svc):
    label_vm(svc, "bob-build", "dom_BobCorp")
    assert run(svc, ROOT, "start", domain="bob-build").ok  # beside a BobCorp VM: fine
    r = run(svc, ident("alice"), "snapshot-revert", domain="alice-db", snapshot="old")
    assert r.status == EXIT_OK, r.message
    # it runs, and runs as what it is now, not as the snapshot's AliceCorp
    assert running_labels(svc) == {"alice-db": "dom_BobCorp", "bob-build": "dom_BobCorp"}
    xml = svc.backend.dumpxml("alice-db", inactive=True)
    assert "dom_BobCorp" in xml and "dom_AliceCorp" not in xml
    with svc.acm.exclusive():
        assert svc.acm.sync() == []  # what really runs breaks no rule
    # and its competitor, an AliceCorp guest, is refused as it must be
    label_vm(svc, "carol-lab", "dom_AliceCorp")
    r = run(svc, ROOT, "start", domain="carol-lab")
    assert r.status == EXIT_DENIED and "Competitors" in r.message


def test_revert_beside_a_competitor_of_the_current_label_is_refused(svc):
    label_vm(svc, "carol-lab", "dom_AliceCorp")
    assert run(svc, ROOT, "start", domain="carol-lab").ok
    r = run(svc, ident("alice"), "snapshot-revert", domain="alice-db", snapshot="old")
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert "Competitors" in r.message
    assert svc.backend.lookup("alice-db").id is None  # not running
    assert svc.acm.vm_label("alice-db").endswith(":dom_BobCorp")
    rec = last_decision(svc.config, "snapshot-revert")
    assert rec["verdict"] == "denied" and rec["check"] == "acm"


def test_revert_of_a_running_domain_is_checked_without_itself(svc):
    """Reverting a running VM replaces its running instance: it is not its own competitor,
    and it keeps its current label."""
    assert run(svc, ROOT, "start", domain="alice-db").ok
    r = run(svc, ROOT, "snapshot-revert", domain="alice-db", snapshot="old")
    assert r.status == EXIT_OK, r.message
    assert running_labels(svc) == {"alice-db": "dom_BobCorp"}


def test_root_with_acm_off_also_keeps_the_current_label(tmp_path):
    """label_current is not an ACM step: the label read before the revert is the one kept,
    also when nothing else needed to look at the request first."""
    s = acm_service(host_config(tmp_path))
    label_vm(s, "alice-db", "dom_AliceCorp")
    assert run(s, ROOT, "snapshot-create-as", domain="alice-db", snapshot="old").ok
    label_vm(s, "alice-db", "dom_BobCorp")
    s.acm = None  # the same host (the test driver lives in this connection), ACM off
    assert run(s, ROOT, "snapshot-revert", domain="alice-db", snapshot="old").ok
    assert s._meta("alice-db").label == "dom_BobCorp"
