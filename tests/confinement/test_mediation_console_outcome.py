"""Issue 14 item 18 (console is pinned to the checked UUID like every other action) and the
outcome half of item 16 (an unexpected exception after an allowed decision left "pending" in
the audit log).  Real libvirt test driver; the audit log is the real hash-chained file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import ROOT, acm_service, audit_records, host_config, ident, run

from secured_virt.access import audit
from secured_virt.requests import EXIT_FAILED

OTHER = """<domain type='test'><name>alice-web</name>
<uuid>0badc0de-0000-4000-8000-000000000001</uuid>
<memory>1024</memory><os><type>hvm</type></os></domain>"""


@pytest.fixture
def svc(tmp_path):
    return acm_service(host_config(tmp_path))


def test_console_acts_on_the_vm_the_decision_saw(svc):
    """The VM is replaced by another of the same name between the decision and the open:
    the console must not be opened on the replacement."""
    real_authorize = svc.gate.authorize
    checked = svc.backend.lookup("alice-web").uuid

    def authorize_then_swap(*a, **kw):
        v = real_authorize(*a, **kw)
        svc.backend.undefine("alice-web")  # root, elsewhere, meanwhile
        svc.backend.define(OTHER)
        return v

    svc.gate.authorize = authorize_then_swap
    reply, stream = svc.open_console(ident("alice"), "alice-web")
    assert stream is None and reply.status == EXIT_FAILED
    assert f"no longer the VM with UUID {checked}" in reply.message
    rec = [r for r in audit_records(svc.config) if r["type"] == "outcome"][-1]
    assert "replaced after the request was checked" in rec["outcome"]


def test_an_unexpected_exception_is_an_audited_failure_not_pending(svc, monkeypatch):
    assert run(svc, ROOT, "start", domain="alice-web").ok

    def broken(name):
        raise ZeroDivisionError("division by zero")  # a bug in a backend, say

    monkeypatch.setattr(svc.backend, "suspend", broken)
    r = run(svc, ident("alice"), "suspend", domain="alice-web")
    assert r.status == EXIT_FAILED
    assert "internal error (ZeroDivisionError: division by zero)" in r.message
    recs = audit_records(svc.config)
    decision = [x for x in recs if x["type"] == "decision" and x["op"] == "suspend"][-1]
    assert decision["verdict"] == "allowed"
    outcome = [x for x in recs if x["type"] == "outcome" and x["ref"] == decision["seq"]]
    assert outcome and "internal: ZeroDivisionError" in outcome[0]["outcome"]
    allowed = {x["seq"] for x in recs if x["type"] == "decision" and x["verdict"] == "allowed"}
    assert allowed <= {x["ref"] for x in recs if x["type"] == "outcome"}  # none left pending
    assert audit.verify(svc.config.audit_log).ok


def test_an_unexpected_exception_before_the_gate_is_a_failure(svc, monkeypatch):
    def broken(name):
        raise KeyError("surprise")

    monkeypatch.setattr(svc, "_resolve_meta", broken)  # what _run asks
    r = run(svc, ident("alice"), "suspend", domain="alice-web")
    assert r.status == EXIT_FAILED and "internal error" in r.message
