"""Seed 000's label spellings on input, Xen 3.3's ``ACM:<policy>:<label>`` on output.

Seed 000 writes a resource label ``sHype:res:test-wld:green`` and shows a label record as
``(POLICY_SHYPE, "test-wld:dom_System")``; both are accepted wherever a label is read (the
policy library's one parser), and what is stored and shown stays ``ACM:<policy>:<label>``.
"""

from __future__ import annotations

import pytest

import policy

from .conftest import IMG, ROOT, run


@pytest.mark.parametrize(
    "text",
    [
        "sHype:res:test-wld:green",
        "shype:vm:test-wld:green",
        '(POLICY_SHYPE, "test-wld:green")',
        "(POLICY_SHype, 'test-wld:green')",
        "ACM:test-wld:green",
        "policy=test-wld,label=green",
    ],
)
def test_the_seed_spellings_read_as_the_same_label(text):
    lab = policy.parse_label(text)
    assert (lab.policy, lab.name) == ("test-wld", "green")
    assert str(lab) == "ACM:test-wld:green"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('(POLICY_FLASK, "test-wld:green")', policy.Xserr.WRONG_POLICY_TYPE),
        ('(POLICY_SHYPE, "green")', policy.Xserr.BAD_LABEL_FORMAT),
        ("sHype:res:test-wld:a:b", policy.Xserr.BAD_LABEL_FORMAT),
    ],
)
def test_malformed_seed_spellings_are_refused(text, code):
    with pytest.raises(policy.LabelError) as exc:
        policy.parse_label(text)
    assert exc.value.xserr == code


def test_setlabel_takes_the_seed_spellings_and_shows_acm(demo):
    r = run(
        demo,
        ROOT,
        "setlabel",
        domain="alice-db",
        label='(POLICY_SHYPE, "demo.hosting:dom_AliceCorp")',
    )
    assert r.ok, r.message
    assert "ACM:demo.hosting:dom_AliceCorp" in r.data["message"]
    r = run(
        demo,
        ROOT,
        "setlabel",
        domain=IMG.format("alice-db"),
        label="sHype:res:demo.hosting:res_AliceData",
        resource=True,
    )
    assert r.ok, r.message
    assert r.data["message"].endswith("ACM:demo.hosting:res_AliceData")
    got = run(demo, ROOT, "getlabel", domain="alice-db").data
    assert got["display"] == "ACM:demo.hosting:dom_AliceCorp"
    res = {x["resource"]: x for x in run(demo, ROOT, "resources").data["resources"]}
    assert res["file:" + IMG.format("alice-db")]["label"] == "res_AliceData"
    assert demo.acm.host.get_labeled_resources()["file:" + IMG.format("alice-db")] == (
        "ACM:demo.hosting:res_AliceData"
    )
    r = run(
        demo,
        ROOT,
        "setlabel",
        domain="phy:/dev/vg0/alice-db-data",
        label="shype:res:demo.hosting:res_AliceData",
        resource=True,
    )
    assert r.ok, r.message
    # and they start together: the stored labels are the ordinary ones
    assert run(demo, ROOT, "start", domain="alice-db").ok
