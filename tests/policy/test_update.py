"""Policy update at run time: Xen's all-or-nothing semantics and the reference's scenarios."""

from __future__ import annotations

import pytest

import policy
from policy import Mediator, PolicyUpdateRefused, Xserr
from policy.constants import (
    ACM_CHWALL_CONFLICT,
    ACM_EVTCHN_SHARING_VIOLATION,
    ACM_GNTTAB_SHARING_VIOLATION,
    ACM_SSIDREF_IN_USE,
)


def _snapshot(m: Mediator):
    return (m.compiled.name, m.compiled.version, m.running(), m.chwall_state(), m.channels())


def _refused(m, new) -> PolicyUpdateRefused:
    before = _snapshot(m)
    assert m.check_update(new)  # the dry run sees it too
    with pytest.raises(PolicyUpdateRefused) as ei:
        m.update_policy(new)
    assert _snapshot(m) == before, "a refused update must change nothing"
    return ei.value


def test_removing_blue_while_a_blue_domain_runs_is_refused(cex):
    m = Mediator(cex["xm-test"])
    m.domain_create("vm-blue", "blue")
    e = _refused(m, cex["xm-test-new"])
    assert e.pairs == [(ACM_SSIDREF_IN_USE, 0x00020002)]
    assert e.xserr == Xserr.HV_OP_FAILED
    assert "vm-blue" in str(e) and "'blue'" in str(e)
    m.domain_destroy("vm-blue")
    res = m.update_policy(cex["xm-test-new"])
    assert res.removed_vm_labels == ("blue",) and m.compiled.version == "1.1"


def test_green_to_GREEN_rename_keeps_the_running_domain(cex):
    m = Mediator(cex["xm-test"])
    m.domain_create("vm-green", "green", {"disk": "green"})
    res = m.update_policy(cex["xm-test-update"])
    assert res.vm_renames == {"green": "GREEN"}
    assert res.res_renames == {"green": "GREEN", "red": "RED"}
    assert res.relabeled == {"vm-green": ("green", "GREEN")}
    d = m.running()["vm-green"]
    assert (d.policy, d.label, d.ssidref) == ("xm-test-update", "GREEN", 0x00020002)
    assert d.resources == (("disk", "GREEN"),)
    assert m.label_of("vm-green") == "ACM:xm-test-update:GREEN"
    # the wall now separates GREEN and red
    v = m.check_domain_create("vm-red", "red")
    assert not v and v.details["conflicting_domain"] == "vm-green"
    assert m.chwall_state()["running_types"] == {"GREEN": 1, "SystemManagement": 1}
    assert m.counters["updates"] == 1


def test_replay_finds_a_new_chinese_wall_conflict(cex):
    m = Mediator(cex["xm-test"])
    m.domain_create("g", "green")
    m.domain_create("r", "red")  # allowed under xm-test 1.0 (RER = blue, red)
    e = _refused(m, cex["xm-test-new"])  # RER becomes {green, red}
    assert [p[0] for p in e.pairs] == [ACM_CHWALL_CONFLICT]
    assert "Chinese Wall conflict between domains 'g'" in str(e) and "'r'" in str(e)
    assert m.counters["updates_refused"] == 1


@pytest.mark.parametrize(
    "frm,version,fragment",
    [
        (None, "1.1", "does not say which policy it updates"),
        (("xm-test", "0.9"), "1.1", "but the loaded policy is xm-test 1.0"),
        (("other", "1.0"), "1.1", "but the loaded policy is xm-test 1.0"),
        (("xm-test", "1.0"), "1.0", "is not higher"),
        (("xm-test", "1.0"), "0.10", "is not higher"),
    ],
)
def test_version_rules(cex, make_xml, frm, version, fragment):
    m = Mediator(cex["xm-test"])
    new = policy.AcmPolicy.from_xml(make_xml("xm-test", version, from_policy=frm)).compile()
    e = _refused(m, new)
    assert e.xserr == Xserr.VERSION_PREVENTS_UPDATE
    assert e.pairs == [(Xserr.VERSION_PREVENTS_UPDATE, 0)]
    assert fragment in str(e)


def test_version_compares_numerically(cex, make_xml, ex):
    m = Mediator(cex["xm-test"])
    x = ex["xm-test"]
    newer = x.evolve(
        header=policy.PolicyHeader(
            "xm-test", "1.10", from_policy=policy.FromPolicy("xm-test", "1.0")
        )
    )
    m.update_policy(newer.compile())
    assert m.compiled.version == "1.10"


def test_default_skips_the_version_check_both_ways(cex, ex):
    m = Mediator(cex["DEFAULT"])
    m.domain_create("u", None)
    m.update_policy(cex["xm-test"])  # no FromPolicy needed when leaving DEFAULT
    assert m.running()["u"].ssidref == 0  # __UNLABELED__ (ssid 0) never disappears
    m.domain_create("b", "blue")
    e = _refused(m, cex["DEFAULT"])  # back to DEFAULT: blue is in use
    assert e.pairs == [(ACM_SSIDREF_IN_USE, 0x00020002)]
    m.domain_destroy("b")
    m.update_policy(cex["DEFAULT"])
    assert m.running()["u"].ssidref == 0 and m.compiled.name == "DEFAULT"


def test_reset_to_default_renames_a_relabeled_dom0(cex, ex):
    m = Mediator(cex["example.client_v1"], dom0_label="dom_NetworkDomain")
    dflt = ex["DEFAULT"]
    plain = _refused(m, cex["DEFAULT"])
    assert plain.pairs == [(ACM_SSIDREF_IN_USE, 0x00050005)]
    labels = tuple(
        policy.VmLabel(lbl.name, lbl.ste_types, lbl.chwall_types, "dom_NetworkDomain")
        if lbl.name == "SystemManagement"
        else lbl
        for lbl in dflt.vm_labels
    )
    renamed = dflt.evolve(vm_labels=labels)
    assert renamed.is_default()
    res = m.update_policy(renamed.compile())
    assert res.vm_renames == {"dom_NetworkDomain": "SystemManagement"}
    assert m.running()["Domain-0"].label == "SystemManagement"


def test_from_must_name_an_old_label(cex, make_xml):
    m = Mediator(cex["xm-test"])
    text = make_xml(
        "xm-test",
        "1.1",
        ste=("SystemManagement", "blue", "green", "red"),
        chwall=("SystemManagement", "blue", "green", "red"),
        conflicts=[("RER", ("blue", "red"))],
        from_policy=("xm-test", "1.0"),
        vms=[
            ("SystemManagement", ("SystemManagement",), ("SystemManagement",), None),
            ("teal", ("green",), ("green",), "cyan"),
        ],
    )
    e = _refused(m, policy.AcmPolicy.from_xml(text).compile())
    assert e.xserr == Xserr.BAD_LABEL and "no VM label 'cyan'" in str(e)


def _two_color_policy(make_xml, version, *, frm, shared: bool):
    """green and red share type 'bridge' only when ``shared``."""
    ste = ("SystemManagement", "green", "red", "bridge")
    return policy.AcmPolicy.from_xml(
        make_xml(
            "chan",
            version,
            ste=ste,
            chwall=("SystemManagement", "green", "red"),
            conflicts=(),
            from_policy=frm,
            vms=[
                ("SystemManagement", ste, ("SystemManagement",), None),
                ("green", ("green", "bridge"), ("green",), None),
                ("red", ("red", "bridge") if shared else ("red",), ("red",), None),
            ],
            res=[("disk", "bridge", None)],
        )
    ).compile()


def test_replay_checks_existing_event_channels_and_grants(make_xml):
    m = Mediator(_two_color_policy(make_xml, "1.0", frm=None, shared=True))
    m.domain_create("g", "green")
    m.domain_create("r", "red")
    new = _two_color_policy(make_xml, "1.1", frm=("chan", "1.0"), shared=False)
    cid = m.evtchn_bind("g", "r")
    e = _refused(m, new)
    g, r = m.running()["g"].domid, m.running()["r"].domid
    assert e.pairs == [(ACM_EVTCHN_SHARING_VIOLATION, g << 16 | r)]
    m.evtchn_close(cid)
    m.grant_map("r", "g")
    e = _refused(m, new)
    assert e.pairs == [(ACM_GNTTAB_SHARING_VIOLATION, r << 16 | g)]
    assert "grant mapping" in str(e)


def test_replay_checks_attached_resources(make_xml):
    m = Mediator(_two_color_policy(make_xml, "1.0", frm=None, shared=True))
    m.domain_create("r", "red", {"/srv/disk.img": "disk"})
    e = _refused(m, _two_color_policy(make_xml, "1.1", frm=("chan", "1.0"), shared=False))
    assert e.xserr == Xserr.RESOURCE_ACCESS
    assert e.pairs == [(Xserr.RESOURCE_ACCESS, m.running()["r"].domid)]
    assert "/srv/disk.img" in str(e)


def test_user_guide_mytest_update(cex):
    m = Mediator(cex["mytest"])
    m.domain_create("su", "A-Bank.SecurityUnderwriting")
    v = m.check_domain_create("b", "B-Bank")
    assert not v and v.details["conflict_set"] == "RER"  # su holds A-Bank, in conflict
    # __UNLABELED__ is in both conflict sets of mytest: unlabeled domains cannot run beside su
    assert not m.check_domain_create("u", None)
    m.domain_create("auto", "AutoCorp")
    res = m.update_policy(cex["mytest_update"])
    assert m.running()["su"].label == "A-Bank.SU"
    assert res.vm_renames["A-Bank.SecurityUnderwriting"] == "A-Bank.SU"
    assert m.running()["auto"].label == "AutoCorp"
    # A-Bank-WL is a restricted Domain-0 label: AutoCorp workloads are then not authorized
    m.relabel("Domain-0", "A-Bank-WL")
    assert m.check_domain_create("auto2", "AutoCorp").rule == "authorization"
    assert m.check_domain_create("ma", "A-Bank.MA").rule == "chinese_wall"
