"""A Chinese Wall refusal is decided in O(types) and explained only when read (issue 18).

Naming every conflicting running domain costs O(running domains) (35 us with 100 of them);
with a new domain key on every call no memo helped, so each refusal paid it.  The decision
now needs only the per-type counters; the sentence is written on first read, from a snapshot
of the state the decision saw.
"""

from __future__ import annotations

import pytest

from policy import Mediator
from policy.mediation import lifecycle


@pytest.fixture
def xm(cex):
    return Mediator(cex["xm-test"])


def test_refusals_with_fresh_keys_do_not_scan_running_domains(xm, monkeypatch):
    xm.domain_create("vm-blue", "blue")
    calls = []
    real = lifecycle.find_conflicts
    monkeypatch.setattr(
        lifecycle, "find_conflicts", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    verdicts = [xm.check_domain_create(f"vm-red-{i}", "red") for i in range(200)]
    assert not any(verdicts)
    assert all(v.rule == "chinese_wall" for v in verdicts)
    assert calls == []  # decided on the counters alone
    assert "Stop 'vm-blue' first" in verdicts[7].reason  # explained when read
    assert len(calls) == 1


def test_the_explanation_is_the_state_at_decision_time(xm):
    xm.domain_create("vm-blue", "blue")
    refused = xm.check_domain_create("vm-red", "red")
    xm.domain_destroy("vm-blue")  # the state changes before anyone reads the refusal
    xm.domain_create("vm-blue2", "blue")
    assert refused.details["conflicting_domain"] == "vm-blue"
    assert "held by running domain 'vm-blue'" in refused.reason
    later = xm.check_domain_create("vm-red", "red")  # a new decision sees the new state
    assert later.details["conflicting_domain"] == "vm-blue2"
