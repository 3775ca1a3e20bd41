"""Seed 000/001: a running domain's label that the active policy does not know is kept as
(policy name, label name), shown once, and resolved when a policy of that name is loaded.

The bug: rebuild kept such a label whole ("ACM:demo.hosting:SystemManagement") as if it were a
label *name*, so every message prefixed it again (``ACM:DEFAULT:ACM:demo.hosting:…``) and
loading demo.hosting itself was refused: the domain "would lose access" to its disks.
"""

from __future__ import annotations

import json
import os

import policy

from .conftest import DEMO_POLICY, IMG, ROOT, acm_service, run

DEMO = policy.AcmPolicy.from_file(DEMO_POLICY)


def _default():
    from policy.xsm import builtin_default

    return builtin_default().compile()


def test_mediator_resolves_a_kept_label_when_its_policy_is_loaded():
    m = policy.Mediator(_default())
    problems = m.rebuild(
        [
            (
                "web-01",
                "ACM:demo.hosting:dom_AliceCorp",
                {"file:/img/web.qcow2": "ACM:demo.hosting:res_AliceData"},
            )
        ]
    )
    assert problems  # reality is counted, and what is wrong with it said
    running = m.running()["web-01"]
    assert running.display == "INV_ACM:demo.hosting:dom_AliceCorp"
    assert all("ACM:DEFAULT:ACM:" not in p.message for p in problems)
    new = DEMO.compile()
    assert m.check_update(new) == []
    m.update_policy(new)
    after = m.running()["web-01"]
    assert (after.policy, after.label) == ("demo.hosting", "dom_AliceCorp")
    assert after.ssidref == new.ssidref("dom_AliceCorp")
    assert after.resources == (("file:/img/web.qcow2", "res_AliceData"),)


def test_an_unresolved_label_is_named_once_in_refusals():
    m = policy.Mediator(_default())
    m.rebuild([("web-01", "ACM:demo.hosting:dom_AliceCorp", {"file:/x": None})])
    other = DEMO.evolve(
        header=DEMO.header.__class__(**{**DEMO.header.__dict__, "name": "demo.other"}),
        source="<test>",
    ).compile()
    errors = m.check_update(other)
    text = " ".join(e.message for e in errors)
    assert "ACM:demo.hosting:dom_AliceCorp" in text
    assert "ACM:demo.other:ACM:" not in text and "ACM:DEFAULT:ACM:" not in text


def test_loading_the_policy_running_domains_already_name_is_not_refused(svt_env, tmp_path):
    """Real service, real (test-driver) domains: demo.hosting labelled a running VM and its
    disk; the host 'reboots' without a boot policy (DEFAULT loads, the VM keeps running with
    its label in metadata); root loads demo.hosting again."""
    acm_dir = tmp_path / "acm"
    svc = acm_service(svt_env, acm_dir, DEMO_POLICY.read_bytes())
    assert run(svc, ROOT, "destroy", domain="shared-dns").ok
    assert run(svc, ROOT, "setlabel", domain="shared-dns", label="dom_AliceCorp").ok
    r = run(
        svc, ROOT, "setlabel", domain=IMG.format("shared-dns"), label="res_AliceData", resource=True
    )
    assert r.ok, r.message
    assert run(svc, ROOT, "start", domain="shared-dns").ok
    # the next boot: the marker of the loaded policy is from an earlier boot, no boot policy
    marker = acm_dir / "loaded_policy"
    data = json.loads(marker.read_text())
    data["boot_id"] = "an-earlier-boot"
    marker.write_text(json.dumps(data))
    os.chmod(marker, 0o644)
    after = acm_service(svt_env, acm_dir, None, backend=svc.backend)
    assert after.acm.active.name == "DEFAULT"
    r = run(after, ROOT, "policy-load", xml=DEMO_POLICY.read_text())
    assert r.ok, r.message
    assert "ACM:demo.hosting:ACM:" not in r.message
    sec = run(after, ROOT, "dominfo", domain="shared-dns").data["security"]
    assert sec["label"] == "dom_AliceCorp" and sec["policy"] == "demo.hosting"
    assert sec["ssidref"] == after.acm.active.ssidref("dom_AliceCorp")
