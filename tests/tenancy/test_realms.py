"""Realms on the real libvirt test driver, through ``Service.handle`` (the code svirtd runs).

Two realms, ``a`` and ``b``, and a deliberately wrong UA/PA: one role grants start, dominfo,
list and setlabel on *every* VM to members of both realms.  The realm step must still keep
each realm's members on their own VMs, labels and images, record the realm at define, name
it in the audit, and the realm admin of ``a`` must be confined to ``a`` (ARBAC with the realm
as the range).  Load errors: two realms claiming one VM, overlapping storage; a member that
does not exist is a warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from rbac.groups import GroupResolver
from secured_virt.access.identity import Identity
from secured_virt.config import default_config
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, Request
from secured_virt.service import Service
from secured_virt.tenancy.model import RealmsError, parse_realms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tenancy_helpers import local_accounts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root-owned policy files: run as root")

ROOT = Identity(uid=0, gid=0, user="root", groups=(0,), via="direct", pid=1)

PA = """<RolePolicyDefinition>
  <Role name="Everyone">
    <ManageVM type="all"/>
    <ControlOperation><Accept>
      <operation name="list"/><operation name="dominfo"/><operation name="start"/>
      <operation name="define"/><operation name="hostinfo"/><operation name="attach-disk"/>
      <operation name="setlabel"><Label pattern="*"/></operation>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


#: a private host for the test driver (test:///default is shared by the whole process)
NODE = """<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
<active>2</active><mhz>2000</mhz><model>x86_64</model></cpu><memory>4194304</memory>
<domain type="test"><name>test</name><memory>65536</memory><vcpu>1</vcpu>
<os><type>hvm</type></os></domain></node>"""


def ident(user: str, uid: int) -> Identity:
    return Identity(uid=uid, gid=uid, user=user, groups=(uid,), via="svirtd", pid=os.getpid())


def write_root(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, 0, 0)
    return path


def domain_xml(name: str, disk: str | None = None) -> str:
    dev = (
        f"<disk type='file' device='disk'><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk>"
        if disk
        else ""
    )
    return (
        f"<domain type='test'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu>"
        f"<os><type>hvm</type></os><devices>{dev}</devices></domain>"
    )


@pytest.fixture
def acc():
    with local_accounts() as a:
        yield a


@pytest.fixture
def world(tmp_path, acc):
    """Users: anna (realm a, admin), abe (realm a through group ga), bert (realm b), zed (in
    no realm), newbie (nowhere yet).  VMs: a-web, a-db (realm a by claim), b-web (realm b),
    plain (no realm)."""
    ga = acc.group("ga")
    users = {
        "anna": acc.user("anna"),
        "abe": acc.user("abe", groups=[ga]),
        "bert": acc.user("bert"),
        "zed": acc.user("zed"),
        "newbie": acc.user("newbie"),
    }
    etc = tmp_path / "etc"
    etc.mkdir()
    store_a, store_b = tmp_path / "pool-a", tmp_path / "pool-b"
    store_a.mkdir()
    store_b.mkdir()
    for d in (store_a, store_b):
        (d / "disk.img").write_bytes(b"\0" * 512)
    ua = "".join(
        f'<User name="{u}"><UserRole role="Everyone"/></User>'
        for k, u in users.items()
        if k != "newbie"
    )
    write_root(etc / "ua.xml", f"<UserConfiguration>{ua}</UserConfiguration>")
    write_root(etc / "pa.xml", PA)
    realms = f"""<Realms>
  <Realm name="a">
    <Admin user="{users["anna"]}"/>
    <Member group="{ga}"/>
    <Storage pool="pool-a" path="{store_a}"/>
    <VM pattern="a-*"/>
    <Label name="dom_HomeBanking"/>
  </Realm>
  <Realm name="b">
    <Member user="{users["bert"]}"/>
    <Member user="ghost-user-that-does-not-exist"/>
    <Storage pool="pool-b" path="{store_b}"/>
    <VM pattern="b-*"/>
    <Label name="dom_Fun"/>
  </Realm>
</Realms>"""
    write_root(etc / "realms.xml", realms)
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o700)
    node = etc / "node.xml"
    node.write_text(NODE)
    cfg = dataclasses.replace(
        default_config(),
        uri=f"test://{node}",
        ua=str(etc / "ua.xml"),
        pa=str(etc / "pa.xml"),
        realms=str(etc / "realms.xml"),
        realm_state_dir=str(tmp_path / "realmstate"),
        audit_log=str(logdir / "audit.log"),
        audit_syslog=False,
        auth_dir=str(tmp_path / "ts"),
        label_store=str(tmp_path / "labels.xml"),
        acm_state_dir=str(tmp_path / "acm"),
        save_dir=str(tmp_path / "save"),
        disk_dirs=(str(store_a), str(store_b)),
        svirt=False,
    )
    svc = Service(cfg)
    svc.tenancy.groups = GroupResolver(ttl=0)
    for vm in ("a-web", "a-db", "b-web", "plain"):
        r = svc.handle(ROOT, Request("define", {"xml": domain_xml(vm)}))
        assert r.status == EXIT_OK, r.message
    ids = {k: ident(u, acc.uid(u)) for k, u in users.items()}
    return svc, ids, users, cfg, acc, ga, (store_a, store_b)


def names(reply) -> list[str]:
    return sorted(d["name"] for d in reply.data["domains"])


def audit_records(cfg) -> list[dict]:
    with open(cfg.audit_log) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_members_see_and_act_only_in_their_realm_despite_a_grant_on_all(world):
    svc, ids, *_ = world
    lst = svc.handle(ids["anna"], Request("list", {"all": True}))
    assert names(lst) == ["a-db", "a-web"]
    assert {d["realm"] for d in lst.data["domains"]} == {"a"}
    assert names(svc.handle(ids["abe"], Request("list", {"all": True}))) == ["a-db", "a-web"]
    assert names(svc.handle(ids["bert"], Request("list", {"all": True}))) == ["b-web"]
    assert names(svc.handle(ids["zed"], Request("list", {"all": True}))) == ["plain", "test"]
    assert svc.handle(ids["anna"], Request("dominfo", {"domain": "a-web"})).status == EXIT_OK
    r = svc.handle(ids["anna"], Request("start", {"domain": "b-web"}))
    assert r.status == EXIT_DENIED and r.check == "realm", r.message
    assert "VM 'b-web' belongs to realm 'b'; you are a member of realm 'a'" in r.message
    r = svc.handle(ids["zed"], Request("dominfo", {"domain": "a-web"}))
    assert r.status == EXIT_DENIED and "root realm" in r.message
    r = svc.handle(ids["bert"], Request("dominfo", {"domain": "plain"}))
    assert r.status == EXIT_DENIED and r.check == "realm"
    # root sees every realm, with the realm shown
    rows = {
        d["name"]: d["realm"]
        for d in svc.handle(ROOT, Request("list", {"all": True})).data["domains"]
    }
    assert rows == {"a-web": "a", "a-db": "a", "b-web": "b", "plain": None, "test": None}


def test_host_operations_are_refused_to_realm_members_unless_root_lists_them(world):
    svc, ids, *_ = world
    r = svc.handle(ids["anna"], Request("hostinfo", {}))
    assert r.status == EXIT_DENIED and r.check == "realm"
    assert svc.handle(ids["zed"], Request("hostinfo", {})).status == EXIT_OK


def test_define_records_the_callers_realm_and_the_audit_names_it(world):
    svc, ids, users, cfg, *_ = world
    r = svc.handle(ids["bert"], Request("define", {"xml": domain_xml("bert-box")}))
    assert r.status == EXIT_OK, r.message
    assert svc._meta("bert-box").realm == "b"
    assert svc._meta("bert-box").owner == users["bert"]
    assert svc.handle(ids["anna"], Request("dominfo", {"domain": "bert-box"})).status == EXIT_DENIED
    recs = [x for x in audit_records(cfg) if x.get("type") == "decision"]
    denied = [x for x in recs if x["vm"] == "bert-box" and x["verdict"] == "denied"]
    assert denied and denied[-1]["realm"] == "b" and denied[-1]["check"] == "realm"
    # a name another realm claims cannot be defined into it by a member of this one
    r = svc.handle(ids["bert"], Request("define", {"xml": domain_xml("a-sneaky")}))
    assert r.status == EXIT_DENIED and r.check == "realm", r.message


def test_labels_stay_in_their_realm_even_for_root(world, tmp_path):
    _svc, ids, _users, cfg, *_ = world
    import policy

    acm = Service(dataclasses.replace(cfg, acm=True, acm_state_dir=str(tmp_path / "acm-on")))
    acm.tenancy.groups = GroupResolver(ttl=0)
    xml = policy.examples()["example.client_v1"].read_text()
    r = acm.handle(ROOT, Request("policy-load", {"xml": xml, "boot": True, "overwrite": True}))
    assert r.ok, r.message
    for vm in ("a-web", "plain"):
        if acm.handle(ROOT, Request("dominfo", {"domain": vm})).status != EXIT_OK:
            acm.handle(ROOT, Request("define", {"xml": domain_xml(vm)}))
    ok = acm.handle(
        ids["anna"], Request("setlabel", {"domain": "a-web", "label": "dom_HomeBanking"})
    )
    assert ok.status == EXIT_OK, ok.message
    r = acm.handle(ids["anna"], Request("setlabel", {"domain": "a-web", "label": "dom_Fun"}))
    assert r.status == EXIT_DENIED and r.check == "realm", r.message
    assert "not one of realm 'a''s labels" in r.message
    r = acm.handle(ROOT, Request("setlabel", {"domain": "plain", "label": "dom_HomeBanking"}))
    assert r.status == EXIT_DENIED and "belongs to realm 'a'" in r.message


def test_images_stay_in_their_realm_even_for_root(world):
    svc, ids, *_, stores = world
    store_a, store_b = stores
    # an image of realm b in a definition for realm a: refused, whoever asks
    xml = domain_xml("a-img", str(store_b / "disk.img"))
    r = svc.handle(ROOT, Request("define", {"xml": xml}))
    assert r.status == EXIT_DENIED, r.message
    assert "is an image of realm 'b'" in r.message
    r = svc.handle(ids["anna"], Request("define", {"xml": xml}))
    assert r.status == EXIT_DENIED and "is an image of realm 'b'" in r.message
    ok = domain_xml("a-img", str(store_a / "disk.img"))
    assert svc.handle(ids["anna"], Request("define", {"xml": ok})).status == EXIT_OK


def test_group_membership_change_takes_effect_without_a_restart(world):
    svc, ids, users, _cfg, acc, ga, _ = world
    assert names(svc.handle(ids["newbie"], Request("list", {"all": True}))) == []
    acc.add(users["newbie"], ga)
    # newbie holds no role yet: the realm admin assigns one through the group
    assert svc.tenancy.realms_of(users["newbie"]) == ("a",)
    acc.remove(users["abe"], ga)
    r = svc.handle(ids["abe"], Request("dominfo", {"domain": "a-web"}))
    assert r.status == EXIT_DENIED and r.check == "realm"
    assert "root realm" in r.message


def admin(svc, who, action, realm, **kw):
    return svc.handle(who, Request("realm", {"action": action, "realm": realm, **kw}))


def test_realm_admin_is_confined_to_her_realm(world):
    svc, ids, users, cfg, *_ = world
    anna = ids["anna"]
    # members, grants and assignments inside the realm
    r = admin(svc, anna, "add-member", "a", user=users["newbie"])
    assert r.status == EXIT_OK, r.message
    r = admin(svc, anna, "grant", "a", role="ops", operations=["start", "dominfo"], vms=["a-web"])
    assert r.status == EXIT_OK, r.message
    r = admin(svc, anna, "assign", "a", user=users["newbie"], role="ops", dry_run=True)
    assert r.status == EXIT_OK and "gains" in r.data["impact"], r.data
    assert svc.handle(ids["newbie"], Request("dominfo", {"domain": "a-web"})).status == EXIT_DENIED
    r = admin(svc, anna, "assign", "a", user=users["newbie"], role="ops")
    assert r.status == EXIT_OK, r.message
    assert svc.handle(ids["newbie"], Request("dominfo", {"domain": "a-web"})).status == EXIT_OK
    assert svc.handle(ids["newbie"], Request("dominfo", {"domain": "a-db"})).status == EXIT_DENIED
    # outside the realm: refused, exit 3, audited
    refusals = [
        admin(svc, anna, "add-member", "a", user=users["bert"]),
        admin(svc, anna, "grant", "a", role="ops", operations=["start"], vms=["b-web"]),
        admin(svc, anna, "grant", "a", role="ops", operations=["start"], vms=["plain"]),
        admin(svc, anna, "grant", "a", role="ops", operations=["hostinfo"], vms=["a-web"]),
        admin(svc, anna, "assign", "a", user=users["zed"], role="ops"),
        admin(svc, anna, "assign", "a", user=users["newbie"], role="Everyone"),
        admin(svc, anna, "add-member", "b", user=users["newbie"]),
        admin(svc, ids["bert"], "add-member", "a", user=users["bert"]),
        admin(svc, anna, "create", "c"),
    ]
    for r in refusals:
        assert r.status == EXIT_DENIED, r.message
    recs = [
        x for x in audit_records(cfg) if x.get("op") == "realm-admin" and x["type"] == "decision"
    ]
    assert sum(1 for x in recs if x["verdict"] == "denied") >= len(refusals)
    assert all(x["check"] == "realm" for x in recs)
    assert {x.get("realm") for x in recs} <= {"a", "b", "c"}
    assert os.stat(svc.realm_files.path("a")).st_uid == 0
    assert os.stat(svc.realm_files.path("a")).st_mode & 0o777 == 0o600


def test_a_broken_realm_file_costs_only_that_realm_its_last_change(world):
    svc, ids, users, *_ = world
    anna = ids["anna"]
    assert admin(svc, anna, "add-member", "a", user=users["newbie"]).status == EXIT_OK
    assert (
        admin(svc, anna, "grant", "a", role="ops", operations=["dominfo"], vms=["a-web"]).status
        == EXIT_OK
    )
    assert admin(svc, anna, "assign", "a", user=users["newbie"], role="ops").status == EXIT_OK
    path = svc.realm_files.path("a")
    Path(path).write_text(Path(path).read_text().replace("a-web", "b-web"))  # names realm b's
    res = svc.reload()
    assert res["ok"]
    assert "claims" in svc.realm_files.errors["a"] and "last good" in svc.realm_files.errors["a"]
    # the last good version (before the assignment) is in force: newbie lost only that
    assert svc.handle(ids["newbie"], Request("dominfo", {"domain": "a-web"})).status == EXIT_DENIED
    assert svc.handle(ids["newbie"], Request("dominfo", {"domain": "b-web"})).status == EXIT_DENIED
    assert svc.handle(ids["bert"], Request("dominfo", {"domain": "b-web"})).status == EXIT_OK


def test_removing_a_realm_with_vms_is_refused_listing_them(world):
    svc, *_ = world
    r = admin(svc, ROOT, "rm", "a")
    assert r.status == EXIT_FAILED
    assert "still has VMs: a-db, a-web" in r.message
    assert admin(svc, ROOT, "create", "c").status == EXIT_OK
    assert "c" in svc.tenancy.realms.realms
    assert admin(svc, ROOT, "rm", "c").status == EXIT_OK
    assert "c" not in svc.tenancy.realms.realms


def test_realms_file_errors_name_both_realms():
    two_claims = b"""<Realms>
      <Realm name="a"><VM name="web"/></Realm>
      <Realm name="b"><VM pattern="w*"/></Realm></Realms>"""
    with pytest.raises(RealmsError, match=r"claimed by both realms 'a'.*'b'"):
        parse_realms(two_claims, "realms.xml")
    overlap = b"""<Realms>
      <Realm name="a"><Storage pool="p1" path="/srv/vm"/></Realm>
      <Realm name="b"><Storage pool="p2" path="/srv/vm/b"/></Realm></Realms>"""
    with pytest.raises(RealmsError, match="overlap"):
        parse_realms(overlap, "realms.xml")
    ghost = b"""<Realms><Realm name="a"><Member user="no-such-user-xyz"/></Realm></Realms>"""
    rs = parse_realms(ghost, "realms.xml")
    assert "does not exist" in rs.warnings[0] and "a" in rs.realms


def test_no_realms_file_behaves_as_before(tmp_path, world):
    svc, ids, *_ = world
    cfg = dataclasses.replace(svc.config, realms=str(tmp_path / "absent.xml"))
    plain = Service(cfg)
    assert not plain.tenancy
    for vm in ("a-web", "b-web"):
        assert plain.handle(ROOT, Request("define", {"xml": domain_xml(vm)})).status == EXIT_OK
    lst = plain.handle(ids["anna"], Request("list", {"all": True}))
    assert names(lst) == ["a-web", "b-web", "test"]
    assert all(d["realm"] is None for d in lst.data["domains"])
    assert plain.handle(ids["anna"], Request("dominfo", {"domain": "b-web"})).status == EXIT_OK


def test_sample_realms_file_loads_and_operations_restrict_a_realm():
    from secured_virt.access.operations import CATALOGUE
    from secured_virt.tenancy.check import Tenancy

    sample = (Path(__file__).resolve().parents[2] / "etc" / "realms.xml").read_bytes()
    rs = parse_realms(sample, "realms.xml", CATALOGUE.names)
    assert sorted(rs.realms) == ["acme", "globex"]
    t = Tenancy(rs)
    kw = dict(root=False, op_scope="vm", vm="globex-web", attrs={"realm": "globex"})
    assert t.refusal("example:bob", op_name="start", **kw) is None
    why = t.refusal("example:bob", op_name="undefine", **kw)
    assert "root allows realm 'globex' only" in why
    with pytest.raises(RealmsError, match="not in the catalogue"):
        parse_realms(
            b'<Realms><Realm name="x"><Operation name="fly"/></Realm></Realms>',
            "r.xml",
            CATALOGUE.names,
        )
