"""The mediation module: Chinese Wall, STE, authorization, lifecycle, counters, dry run."""

from __future__ import annotations

import threading

import pytest

import policy
from policy import MediationDenied, Mediator, Xserr


@pytest.fixture
def xm(cex):
    return Mediator(cex["xm-test"])


@pytest.fixture
def client(cex):
    return Mediator(cex["example.client_v1"])


def test_dom0_runs_with_the_bootstrap_label(xm):
    run = xm.running()
    assert list(run) == ["Domain-0"]
    assert run["Domain-0"].ssidref == 65537 and run["Domain-0"].domid == 0
    assert run["Domain-0"].display == "ACM:xm-test:SystemManagement"


def test_chinese_wall_refuses_a_conflicting_domain_and_explains(xm):
    xm.domain_create("vm-blue", "blue")
    with pytest.raises(MediationDenied) as ei:
        xm.domain_create("vm-red", "ACM:xm-test:red")
    e = ei.value
    assert e.hook == "domain_create" and e.rule == "chinese_wall"
    assert e.xserr == Xserr.VM_IN_CONFLICT
    assert e.details["conflict_set"] == "RER"
    assert e.details["conflicting_domain"] == "vm-blue"
    assert e.details["conflicting_type"] == "blue"
    assert e.details["types"] == ["red"]
    assert "vm-blue" in str(e) and "RER" in str(e) and "Stop 'vm-blue' first" in str(e)
    assert "vm-red" not in xm.running()
    # same company may run twice; an unrelated type may run
    xm.domain_create("vm-blue2", "blue")
    xm.domain_create("vm-green", "green")


def test_destroy_undoes_exactly(xm):
    before = xm.chwall_state()
    xm.domain_create("b1", "blue")
    xm.domain_create("b2", "blue")
    assert xm.chwall_state()["conflict_aggregate"] == {"red": 2}
    xm.domain_destroy("b1")
    assert not xm.check_domain_create("r", "red")
    xm.domain_destroy("b2")
    assert xm.chwall_state() == before
    xm.domain_create("r", "red")


def test_save_restore_and_migration_count_as_destroy_create(xm):
    xm.domain_create("b", "blue")
    saved = xm.domain_save("b")
    assert saved.label == "blue" and "b" not in xm.running()
    xm.domain_create("r", "red")  # the wall is down while b is saved
    with pytest.raises(MediationDenied) as ei:
        xm.domain_restore("b", format(policy.format_label(saved.policy, saved.label)))
    assert ei.value.hook == "domain_restore" and ei.value.rule == "chinese_wall"
    xm.migrate_out("r")
    xm.domain_restore("b", policy.Label("xm-test", "blue"))
    assert xm.running()["b"].label == "blue"
    with pytest.raises(MediationDenied) as ei:
        xm.migrate_in("r", "red")
    assert ei.value.hook == "migrate_in"


def test_labels_resolve_by_policy_and_name(xm):
    v = xm.check_domain_create("x", "ACM:example.client_v1:dom_Fun")
    assert not v and v.rule == "label" and v.code == Xserr.BAD_LABEL
    assert "belongs to policy 'example.client_v1'" in v.reason
    v = xm.check_domain_create("x", "purple")
    assert not v and "not a VM label of the active policy 'xm-test'" in v.reason
    v = xm.check_domain_create("x", "INV_ACM:xm-test:blue")
    assert not v and "invalidated" in v.reason
    assert xm.check_domain_create("x", "policy=xm-test,label=green")


def test_already_running_is_refused(xm):
    xm.domain_create(7, "green")
    v = xm.check_domain_create(7, "green")
    assert not v and v.rule == "state"
    assert xm.running()[7].domid == 7


def test_destroy_unknown_and_dom0(xm):
    with pytest.raises(MediationDenied, match="not running"):
        xm.domain_destroy("ghost")
    with pytest.raises(MediationDenied, match="management domain"):
        xm.domain_destroy("Domain-0")


def test_authorization_dom0_must_cover_the_new_domain(cex):
    # client_v1 has no __UNLABELED__ label: an unlabeled domain has no STE type at all
    m = Mediator(cex["example.client_v1"])
    v = m.check_domain_create("u", None)
    assert not v and v.rule == "authorization" and v.code == Xserr.VM_NOT_AUTHORIZED
    assert "no STE type" in v.reason
    # restrict Domain-0 to the home-banking workload: dom_Fun is no longer authorized
    m2 = Mediator(cex["example.client_v1"], dom0_label="dom_HomeBanking")
    v = m2.check_domain_create("f", "dom_Fun")
    assert not v and v.details["missing_types"] == ["ste_InternetInsecure"]
    assert m2.authorization("dom_HomeBanking")
    assert not m2.authorization("dom_Fun")


def test_default_policy_runs_unlabeled_domains(cex):
    m = Mediator(cex["DEFAULT"])
    m.domain_create("u", None)
    assert m.running()["u"].label == policy.UNLABELED and m.running()["u"].ssidref == 0
    assert m.share_resource(None, None)


def test_share_resource_ste(client):
    ok = client.share_resource("dom_HomeBanking", "res_SecurityToken", "token0")
    assert ok and ok.details["common_types"] == ["ste_PersonalFinances"]
    no = client.share_resource("dom_Fun", "res_SecurityToken", "token0")
    assert not no and no.rule == "ste"
    assert no.details["vm_types"] == ["ste_InternetInsecure"]
    assert no.details["resource_types"] == ["ste_PersonalFinances"]
    assert "token0" in no.reason and "ste_InternetInsecure" in no.reason
    assert client.share_resource("dom_StorageDomain", "res_HardDrive(hda)")
    inacc = client.share_resource("SystemManagement", "__INACCESSIBLE__", "/dev/sdz")
    assert not inacc and inacc.rule == "inaccessible" and "/dev/sdz" in inacc.reason
    other = client.share_resource("dom_Fun", "ACM:xm-test:blue")
    assert not other and other.rule == "label"
    c = client.counters
    assert c["res_eval"] == 5 and c["res_denied"] == 3
    again = client.share_resource("dom_Fun", "res_SecurityToken", "token0")
    assert not again and again.reason == no.reason
    assert client.counters["res_denied"] == 4


def test_domain_create_checks_resources(client):
    with pytest.raises(MediationDenied) as ei:
        client.domain_create(
            "fun",
            "dom_Fun",
            {"/img/fun": "res_LogicalDiskPartition2(hda2)", "tok": "res_SecurityToken"},
        )
    assert ei.value.rule == "ste" and ei.value.details["resource"] == "tok"
    assert "fun" not in client.running()
    d = client.domain_create("fun", "dom_Fun", [("/img/fun", "res_LogicalDiskPartition2(hda2)")])
    assert d.resources == (("/img/fun", "res_LogicalDiskPartition2(hda2)"),)


def test_dry_run_lists_every_item(client):
    client.domain_create("bank", "dom_HomeBanking")
    r = client.dry_run(
        "dom_Fun", {"disk": "res_LogicalDiskPartition2(hda2)", "tok": "res_SecurityToken"}
    )
    assert not r.allowed
    items = dict(r.items)
    assert items["label"] and items["authorization"]
    assert (
        not items["chinese_wall"] and items["chinese_wall"].details["conflicting_domain"] == "bank"
    )
    assert items["resource disk"] and not items["resource tok"]
    lines = r.lines()
    assert any(line.startswith("chinese_wall: DENIED") for line in lines)
    assert r.as_dict()["items"][0]["item"] == "label"
    assert "bank" in client.running() and "dry" not in client.running()  # no state change


def test_event_channels_and_grants(cex):
    m = Mediator(cex["example.client_v1"])
    m.domain_create("net", "dom_NetworkDomain")
    m.domain_create("fun", "dom_Fun")
    m.domain_create("boinc", "dom_BoincClient")
    assert m.check_evtchn("fun", "net", "unbound")
    assert m.check_evtchn("fun", "net")  # cached now
    v = m.check_evtchn("fun", "boinc")
    assert not v and v.rule == "ste" and v.details["remote_types"] == ["ste_DonatedCycles"]
    with pytest.raises(MediationDenied):
        m.evtchn_bind("fun", "boinc")
    cid = m.evtchn_bind("fun", "net")
    gid = m.grant_map("boinc", "net")
    assert {c[0] for c in m.channels()} == {cid, gid}
    assert not m.check_grant("boinc", "fun")
    c = m.counters
    assert c["ec_eval"] == 5 and c["ec_denied"] == 2 and c["ec_cachehit"] >= 2
    assert c["gt_eval"] == 2 and c["gt_denied"] == 1
    assert not m.check_evtchn("fun", "ghost")
    with pytest.raises(ValueError):
        m.check_evtchn("fun", "net", "bogus")
    m.domain_destroy("fun")  # channels of a destroyed domain go away
    assert [c[0] for c in m.channels()] == [gid]
    m.grant_unmap(gid)
    assert m.channels() == []


def test_ste_cache_is_bounded(cex):
    m = Mediator(cex["DEFAULT"])
    for i in range(12):
        m.domain_create(f"u{i}", None)
    for i in range(12):
        assert m.check_evtchn("u0", f"u{i}")
    # 8 slots (ACM_TE_CACHE_SIZE), oldest evicted first: u4..u11 are cached now
    for i in range(4, 12):
        m.check_evtchn("u0", f"u{i}")
    assert m.counters["ec_cachehit"] == 8
    m.check_evtchn("u0", "u1")
    assert m.counters["ec_cachehit"] == 8
    m.domain_destroy("u5")  # a destroyed peer leaves every cache (its id may be reused)
    m.domain_create("u5", None)
    m.check_evtchn("u0", "u5")
    assert m.counters["ec_cachehit"] == 8


def test_relabel_running_domain(xm):
    xm.domain_create("a", "green")
    xm.domain_create("b", "blue")
    with pytest.raises(MediationDenied) as ei:
        xm.relabel("a", "red", old_label="green")
    assert ei.value.rule == "replay" and ei.value.xserr == Xserr.VM_IN_CONFLICT
    assert ei.value.details["errors"][0][0] == 0x103
    assert xm.running()["a"].label == "green"  # unchanged
    with pytest.raises(MediationDenied) as ei:
        xm.relabel("a", "blue", old_label="red")
    assert ei.value.rule == "label" and ei.value.xserr == Xserr.BAD_LABEL
    assert xm.check_relabel("a", "blue", "green")
    d = xm.relabel("a", "blue", old_label="ACM:xm-test:green")
    assert d.label == "blue" and d.ssidref == 0x00020002
    assert xm.chwall_state()["running_types"]["blue"] == 2
    assert "green" not in xm.chwall_state()["running_types"]
    with pytest.raises(MediationDenied, match="not running"):
        xm.relabel("ghost", "blue")


def test_relabel_keeps_channels_and_resources_valid(cex):
    m = Mediator(cex["example.client_v1"])
    m.domain_create("net", "dom_NetworkDomain")
    m.domain_create("fun", "dom_Fun", {"disk2": "res_LogicalDiskPartition2(hda2)"})
    m.evtchn_bind("fun", "net")
    v = m.check_relabel("fun", "dom_HomeBanking")
    assert not v
    assert {e[0] for e in v.details["errors"]} == {Xserr.RESOURCE_ACCESS}
    assert "disk2" in v.reason


def test_relabel_dom0_changes_authorization(cex):
    m = Mediator(cex["example.client_v1"])
    assert m.authorization("dom_Fun")
    m.relabel("Domain-0", "dom_NetworkDomain")
    assert m.authorization("dom_Fun")
    assert not m.authorization("dom_StorageDomain")
    assert not m.check_domain_create("s", "dom_StorageDomain")


def test_rebuild_counts_reality_and_reports(cex):
    m = Mediator(cex["xm-test"])
    problems = m.rebuild([("b", "blue"), ("r", "red"), ("x", "ACM:other:thing"), (4, "green")])
    assert set(m.running()) == {"Domain-0", "b", "r", "x", 4}
    codes = [p.code for p in problems]
    assert 0x103 in codes and Xserr.BAD_LABEL in codes
    assert m.chwall_state()["running_types"] == {
        "SystemManagement": 1,
        "blue": 1,
        "red": 1,
        "green": 1,
    }
    assert m.running()["x"].display.startswith("INV_ACM:")
    assert m.running()[4].domid == 4
    assert m.rebuild([]) == [] and set(m.running()) == {"Domain-0"}


def test_counters_like_xen(xm):
    xm.domain_create("b", "blue")
    xm.check_domain_create("r", "red")
    xm.check_domain_create("g", "green")
    c = xm.counters
    assert c["chwall_eval"] == 3 and c["chwall_denied"] == 1 and c["domains_created"] == 1


def test_one_lock_makes_conflicting_starts_exclusive(cex):
    """Many threads race to start blue and red domains: the wall must hold at every moment."""
    m = Mediator(cex["xm-test"])
    started: list[str] = []
    barrier = threading.Barrier(16)

    def worker(i):
        barrier.wait()
        color = "blue" if i % 2 else "red"
        try:
            m.domain_create(f"{color}{i}", color)
            started.append(color)
        except MediationDenied:
            pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(started)) == 1 and started
    colors = {d.label for k, d in m.running().items() if k != "Domain-0"}
    assert colors == set(started)


def test_verdict_shapes(xm):
    v = xm.check_domain_create("g", "green")
    assert v.allowed and bool(v) and v.code == 0 and v.rule == "allow"
    d = v.as_dict()
    assert d["allowed"] is True and d["details"]["ssidref"] == 0x00030003
    xm.domain_create("b", "blue")
    text = xm.check_domain_create("r", "red").explain()
    assert text.startswith("DENIED (domain_create, chinese_wall)")
    assert "conflict: type red vs blue (set RER) held by 'b'" in text
