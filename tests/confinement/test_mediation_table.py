"""Issue 14: "make 5-9 structurally impossible to forget" — the mediation table.

Walks the operation catalogue: every operation has a row; every operation that changes what a
VM can reach declares the mediation it needs (RBAC, the ACM lock after authentication, an ACM
step, and the fence and allow-list where it brings in devices or a definition); the service
refuses, audited, an operation whose row is missing or whose command does not claim its
command steps; docs/mediation.md is the page generated from the table.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import (
    REPO,
    ROOT,
    acm_service,
    host_config,
    ident,
    label_vm,
    last_decision,
    run,
)

from secured_virt.access.operations import CATALOGUE
from secured_virt.cli.commands import COMMANDS
from secured_virt.requests import EXIT_DENIED, EXIT_OK
from secured_virt.service import Service, mediation
from secured_virt.service.mediation import (
    ACM_DESTINATION,
    ACM_LABEL,
    ACM_LOCK,
    ACM_POLICY,
    ACM_RESOURCES,
    ACM_VM,
    DEVICE_ALLOWLIST,
    DISK_FENCE,
    LABEL_CURRENT,
    PIN,
    RBAC,
    TABLE,
)

#: what the issue and DESIGN.md name as changing what a VM can reach: each must be "widens"
KNOWN_WIDENING = {
    "start",
    "create",
    "define",
    "attach-disk",
    "attach-interface",
    "restore",
    "snapshot-revert",
    "migrate",
    "setlabel",
    "relabel",
    "setlabel-resource",
    "policy-load",
    "policy-update",
    "policy-reset",
    "daemon-admin",
}
#: operations that bring in a host device or a whole definition: the fence applies
BRINGS_DEVICES = {"create", "define", "attach-disk", "attach-interface", "restore"}
#: operations whose domain comes back from a stored copy: the current label must win
FROM_A_STORED_COPY = {"restore", "snapshot-revert"}


def test_every_catalogue_operation_has_a_row_and_every_row_an_operation():
    names = {op.name for op in CATALOGUE}
    assert set(TABLE) == names, (sorted(names - set(TABLE)), sorted(set(TABLE) - names))


def test_every_step_is_known_and_rbac_comes_first():
    for r in TABLE.values():
        assert set(r.steps) <= set(mediation.STEPS), r
        # the realm check (issue 15) is the one step before RBAC: it depends on no grant
        assert r.steps[:2] == (mediation.REALM, RBAC), r
        assert len(set(r.steps)) == len(r.steps), r
        assert r.reach in (mediation.WIDENS, mediation.NONE, mediation.OUTSIDE), r
        assert r.why, r


@pytest.mark.parametrize("op", sorted(o.name for o in CATALOGUE))
def test_an_operation_that_changes_reach_declares_its_mediation(op):
    r = TABLE[op]
    if op in KNOWN_WIDENING:
        assert r.reach == mediation.WIDENS, f"{op} changes what a VM can reach"
    if CATALOGUE.get(op).reads_only:
        assert r.reach == mediation.NONE, f"{op} only reads"
        return
    if r.reach != mediation.WIDENS:
        return
    steps = set(r.steps)
    acm = {ACM_VM, ACM_RESOURCES, ACM_LABEL, ACM_POLICY, ACM_DESTINATION}
    assert steps & acm, f"{op} widens reach but has no sHype/ACM step"
    if op != "daemon-admin":  # svirtd's reload builds a new enforcer; nothing to lock
        assert ACM_LOCK in steps, f"{op} widens reach outside the host-wide ACM lock"
    if CATALOGUE.get(op).scope == "vm" and op not in ("create", "define"):
        assert PIN in steps, f"{op} acts on a VM without pinning it to the checked UUID"
    if op in BRINGS_DEVICES:
        assert {DISK_FENCE, DEVICE_ALLOWLIST} <= steps or (
            op == "attach-interface" and DEVICE_ALLOWLIST in steps
        ), f"{op} brings in devices without the fence and the allow-list"
    if op in ("start", "snapshot-revert", "restore"):
        assert DISK_FENCE in steps and ACM_VM in steps, f"{op}: images re-checked, ACM on VM"
    if op in FROM_A_STORED_COPY:
        assert LABEL_CURRENT in steps, f"{op} could bring back an old label"


def test_no_operation_widens_outside_the_gate():
    # autostart was the one gap (libvirt's flag starts a VM at host boot, unchecked); it now
    # records a wish that svirtd carries out through the start row (service.autostart)
    assert {o for o, r in TABLE.items() if r.reach == mediation.OUTSIDE} == set()


def test_every_vm_command_maps_to_a_row():
    for name, cmd in COMMANDS.items():
        op = getattr(cmd, "op", None)
        if op:
            assert op in TABLE, f"svirsh {name} uses operation {op} which has no row"


def test_docs_page_is_the_generated_one():
    committed = (REPO / "docs" / "mediation.md").read_text()
    assert committed == mediation.render_markdown(), (
        "docs/mediation.md is stale: run "
        "`python -m secured_virt.service.mediation > docs/mediation.md`"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-m", "secured_virt.service.mediation"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert out == committed


# -- the service reads the table: no row, or an unclaimed command step, refuses ------------
@pytest.fixture
def svc(tmp_path):
    return acm_service(host_config(tmp_path))


def test_an_operation_without_a_row_is_refused_and_audited(svc, monkeypatch):
    rows = dict(TABLE)
    del rows["suspend"]
    monkeypatch.setattr(mediation, "TABLE", rows)
    assert run(svc, ROOT, "start", domain="alice-web").ok
    r = run(svc, ROOT, "suspend", domain="alice-web")
    assert r.status == EXIT_DENIED and r.check == "mediation"
    assert "no row in the mediation table" in r.message
    assert svc.backend.lookup("alice-web").state == "running"  # nothing ran
    rec = last_decision(svc.config, "suspend")
    assert rec["verdict"] == "denied" and rec["check"] == "mediation"


def test_a_command_that_does_not_claim_its_command_steps_is_refused(svc, monkeypatch):
    """A new (or edited) command for an operation whose row has a step only the command can
    perform must say it performs it; forgetting it stops the request, it does not run it."""
    rows = dict(TABLE)
    rows["destroy"] = dataclasses.replace(TABLE["destroy"], steps=(RBAC, PIN, ACM_LABEL))
    monkeypatch.setattr(mediation, "TABLE", rows)
    assert run(svc, ROOT, "start", domain="alice-web").ok
    r = run(svc, ROOT, "destroy", domain="alice-web")
    assert r.status == EXIT_DENIED and r.check == "mediation"
    assert "acm_label" in r.message
    assert svc.backend.lookup("alice-web").state == "running"


def test_a_facade_step_without_an_effect_fails_closed(svc, monkeypatch):
    """A row that asks the façade to inspect what a request reaches, for a command that does
    not describe it, refuses instead of running unchecked."""
    rows = dict(TABLE)
    rows["resume"] = dataclasses.replace(TABLE["resume"], steps=(RBAC, ACM_LOCK, PIN, ACM_VM))
    monkeypatch.setattr(mediation, "TABLE", rows)
    assert run(svc, ROOT, "start", domain="alice-web", paused=True).ok
    r = run(svc, ROOT, "resume", domain="alice-web")
    assert r.status == EXIT_DENIED and r.check == "acm"
    assert svc.backend.lookup("alice-web").state == "paused"


def test_widening_commands_run_their_acm_step(svc):
    """Each widening VM command through the service, as a non-root tenant: its decision
    record carries the ACM step's sentence, so the step ran (and ran inside the gate)."""
    alice = ident("alice")
    label_vm(svc, "alice-web", "dom_AliceCorp")
    r = run(svc, alice, "start", domain="alice-web")
    assert r.status == EXIT_OK, r.message
    assert "ACM demo.hosting" in last_decision(svc.config, "start")["rule"]
    assert run(svc, alice, "snapshot-create-as", domain="alice-web", snapshot="s1").ok
    r = run(svc, alice, "snapshot-revert", domain="alice-web", snapshot="s1")
    assert r.status == EXIT_OK, r.message
    assert "ACM demo.hosting" in last_decision(svc.config, "snapshot-revert")["rule"]


def test_service_has_no_unmediated_path_to_the_backend():
    """Every command handler reaches the backend through _run/_gated/_host_op (which read
    the table) or is a query: a handler that called the gate itself would bypass the table."""
    import inspect

    from secured_virt.service import facade

    for name in dir(Service):
        if not name.startswith("_cmd_"):
            continue
        src = inspect.getsource(getattr(Service, name))
        assert "gate.authorize(" not in src or name == "_cmd_list", name
    assert "gate.authorize(" not in inspect.getsource(facade.Service.open_console)
