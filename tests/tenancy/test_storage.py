"""Each realm's storage pool and quotas, through ``Service.handle`` on the libvirt test driver.

Real local users (anna: realm a, bert: realm b), a deliberately wide UA/PA (every operation
on every object, pools included): only the realm steps keep each tenant in her own pool and
her VMs on her own images.  The pools are libvirt directory pools (test driver: in memory);
images that need real bytes (qcow2 headers) are real files in the pool's directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from rbac.groups import GroupResolver
from secured_virt.config import default_config
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Request
from secured_virt.service import Service

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "confinement")]
from fence_helpers import qcow2_header  # noqa: E402
from tenancy_helpers import local_accounts  # noqa: E402
from test_realms import NODE, ROOT, domain_xml, ident, write_root  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root-owned policy files: run as root")

PA = """<RolePolicyDefinition>
  <Role name="Everything">
    <ManageVM type="all"/>
    <ControlOperation><Accept><operation id="*"/></Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


def realms_xml(users, pa: Path, pb: Path, quota: str = "") -> str:
    return f"""<Realms>
  <Realm name="a"><Admin user="{users["anna"]}"/><Storage pool="pool-a" path="{pa}"/>
    <VM pattern="a-*"/>{quota}</Realm>
  <Realm name="b"><Member user="{users["bert"]}"/><Storage pool="pool-b" path="{pb}"/>
    <VM pattern="b-*"/></Realm>
</Realms>"""


@pytest.fixture
def env(tmp_path):
    with local_accounts() as acc:
        users = {k: acc.user(k) for k in ("anna", "bert", "zed")}
        etc = tmp_path / "etc"
        etc.mkdir()
        pa, pb = tmp_path / "pool-a", tmp_path / "pool-b"
        ua = "".join(
            f'<User name="{u}"><UserRole role="Everything"/></User>' for u in users.values()
        )
        write_root(etc / "ua.xml", f"<UserConfiguration>{ua}</UserConfiguration>")
        write_root(etc / "pa.xml", PA)
        write_root(etc / "realms.xml", realms_xml(users, pa, pb))
        (tmp_path / "log").mkdir(mode=0o700)
        (etc / "node.xml").write_text(NODE)
        cfg = dataclasses.replace(
            default_config(),
            uri=f"test://{etc / 'node.xml'}",
            ua=str(etc / "ua.xml"),
            pa=str(etc / "pa.xml"),
            realms=str(etc / "realms.xml"),
            realm_state_dir=str(tmp_path / "realmstate"),
            audit_log=str(tmp_path / "log" / "audit.log"),
            audit_syslog=False,
            auth_dir=str(tmp_path / "ts"),
            label_store=str(tmp_path / "labels.xml"),
            acm_state_dir=str(tmp_path / "acm"),
            save_dir=str(tmp_path / "save"),
            disk_dirs=(),
            svirt=False,
        )
        svc = Service(cfg)
        svc.tenancy.groups = GroupResolver(ttl=0)
        for r in svc.tenancy.realms.realms.values():  # root's set-up: the realms' pools
            assert svc._realm_storage_setup(r), r.name
        ids = {k: ident(u, acc.uid(u)) for k, u in users.items()}
        yield svc, ids, users, cfg, (pa, pb), etc


def call(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


def audit(cfg) -> list[dict]:
    with open(cfg.audit_log) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_a_tenant_creates_lists_inspects_and_deletes_volumes_in_her_pool(env):
    svc, ids, *_, (pa, _pb), _etc = env
    anna = ids["anna"]
    r = call(svc, anna, "vol-create-as", pool="pool-a", name="disk1.qcow2", capacity="10M",
             format="qcow2")  # fmt: skip
    assert r.status == EXIT_OK and r.data["message"] == "Vol disk1.qcow2 created", r.message
    # virsh's option form, and no pool at all: her realm's
    r = call(svc, anna, "vol-create-as", pool_opt="pool-a", name_opt="d2", capacity_opt="1KiB")
    assert r.status == EXIT_OK, r.message
    r = call(svc, anna, "vol-list")
    assert r.status == EXIT_OK, r.message
    assert [(v["name"], v["path"]) for v in r.data["volumes"]] == [
        ("d2", f"{pa}/d2"),
        ("disk1.qcow2", f"{pa}/disk1.qcow2"),
    ]
    info = call(svc, anna, "vol-info", vol="disk1.qcow2", pool="pool-a")
    assert info.status == EXIT_OK and info.data["capacity"] == 10 << 20
    assert call(svc, anna, "vol-info", vol=f"{pa}/d2").data["capacity"] == 1024
    r = call(svc, anna, "vol-delete", vol=f"{pa}/d2")
    assert r.status == EXIT_OK and r.data["message"] == f"Vol {pa}/d2 deleted"
    r = call(svc, anna, "vol-delete", vol_opt="disk1.qcow2", pool="pool-a")
    assert r.status == EXIT_OK, r.message
    assert call(svc, anna, "vol-list", pool="pool-a").data["volumes"] == []


def test_the_other_realms_pool_and_volumes_are_out_of_reach(env):
    svc, ids, _users, cfg, (_pa, pb), _etc = env
    assert call(svc, ids["bert"], "vol-create-as", pool="pool-b", name="b.img",
                capacity="1M").status == EXIT_OK  # fmt: skip
    anna = ids["anna"]
    for command, args in (
        ("vol-list", {"pool": "pool-b"}),
        ("vol-info", {"vol": "b.img", "pool": "pool-b"}),
        ("vol-info", {"vol": f"{pb}/b.img"}),
        ("vol-delete", {"vol": f"{pb}/b.img"}),
        ("vol-create-as", {"pool": "pool-b", "name": "mine.img", "capacity": "1M"}),
    ):
        r = call(svc, anna, command, **args)
        assert r.status == EXIT_DENIED and r.check == "realm", (command, r.message)
        assert "pool 'pool-b' is the storage of realm 'b'" in r.message
    # a user of no realm: not a realm's pool either
    r = call(svc, ids["zed"], "vol-list", pool="pool-a")
    assert r.status == EXIT_DENIED and "you are a member of the root realm" in r.message
    assert [v.name for v in svc.backend.vol_list("pool-b")] == ["b.img"]
    denied = [x for x in audit(cfg) if x.get("type") == "decision" and x["verdict"] == "denied"]
    assert {x["op"] for x in denied} >= {"vol-list", "vol-info", "vol-delete", "vol-create-as"}
    assert all(x["check"] == "realm" and x.get("realm") == "b" for x in denied if x["uid"] != 0
               and x["vm"] == "pool-b")  # fmt: skip


def test_a_volume_name_is_never_a_path(env):
    """The test driver itself would create ``<pool>/../escape`` (outside the pool)."""
    svc, ids, *_ = env
    for bad in ("../escape", "sub/x", ".hidden", "-opt"):
        r = call(svc, ids["anna"], "vol-create-as", pool="pool-a", name=bad, capacity="1M")
        assert r.status == EXIT_USAGE and "invalid volume name" in r.message, r.message
    for bad in ("../escape", "sub/x"):
        with pytest.raises(Exception, match="invalid volume name"):
            svc.backend.vol_create_as("pool-a", bad, 1)
    assert svc.backend.vol_list("pool-a") == []


def test_a_vm_of_realm_b_cannot_use_realm_a_volumes(env):
    svc, ids, *_, (pa, pb), _etc = env
    assert call(svc, ids["anna"], "vol-create-as", pool="pool-a", name="a.img",
                capacity="1M").status == EXIT_OK  # fmt: skip
    bert = ids["bert"]
    # define, by path (bert and root alike)
    for who in (bert, ROOT):
        r = call(svc, who, "define", xml=domain_xml("b-vm", f"{pa}/a.img"))
        assert r.status == EXIT_DENIED and "is an image of realm 'a'" in r.message, r.message
    # define, as a libvirt volume of realm a's pool (root: non-root callers may not name pools)
    vol_disk = (
        "<disk type='volume' device='disk'><source pool='pool-a' volume='a.img'/>"
        "<target dev='vda' bus='virtio'/></disk>"
    )
    xml = domain_xml("b-vm").replace("<devices>", f"<devices>{vol_disk}")
    r = call(svc, ROOT, "define", xml=xml)
    assert r.status == EXIT_DENIED and "volume 'a.img' of pool 'pool-a'" in r.message, r.message
    # ... and a VM of no realm may not use it either (it was read as a bare name, 'a.img')
    r = call(svc, ROOT, "define", xml=xml.replace("b-vm", "plain-vm"))
    assert r.status == EXIT_DENIED and "is in the storage of realm 'a'" in r.message, r.message
    # attach, to a VM of realm b
    pb.mkdir(exist_ok=True)
    own = pb / "own.img"
    own.write_bytes(b"\0" * 65536)
    assert call(svc, bert, "define", xml=domain_xml("b-vm", str(own))).status == EXIT_OK
    r = call(svc, bert, "attach-disk", domain="b-vm", source=f"{pa}/a.img", target="vdb",
             config=True)  # fmt: skip
    assert r.status == EXIT_DENIED and "is an image of realm 'a'" in r.message, r.message
    # start: b's own image was given a qcow2 header (its guest can write one) whose backing
    # file is realm a's image; the start reads the chain again and refuses
    pa.mkdir(exist_ok=True)
    (pa / "a.img").write_bytes(b"\0" * 65536)
    qcow2_header(own, backing=str(pa / "a.img").encode(), backing_fmt=b"raw")
    r = call(svc, bert, "start", domain="b-vm")
    assert r.status == EXIT_DENIED and f"'{pa}/a.img' is an image of realm 'a'" in r.message, (
        r.message
    )
    assert svc.backend.lookup("b-vm").id is None


def test_quotas_name_the_limit_and_the_use(env):
    svc, ids, users, cfg, (pa, pb), etc = env
    quota = '<Quota vms="2" vcpus="3" memory="192M" bytes="10M"/>'
    write_root(etc / "realms.xml", realms_xml(users, pa, pb, quota))
    assert svc.reload()["ok"]
    anna = ids["anna"]

    def vm(name, vcpus=1, mib=64):
        x = domain_xml(name).replace("<vcpu>1</vcpu>", f"<vcpu>{vcpus}</vcpu>")
        return x.replace("<memory>65536</memory>", f"<memory>{mib * 1024}</memory>")

    # bytes
    assert call(svc, anna, "vol-create-as", pool="pool-a", name="x", capacity="6M").ok
    r = call(svc, anna, "vol-create-as", pool="pool-a", name="y", capacity="5M")
    assert r.status == EXIT_DENIED, r.message
    assert "may hold 10.00 MiB of volumes" in r.message and "1 volume holds 6.00 MiB" in r.message
    assert "'y' needs 5.00 MiB" in r.message
    assert call(svc, anna, "vol-create-as", pool="pool-a", name="y", capacity="4M").ok
    # a definition that could never start
    r = call(svc, anna, "define", xml=vm("a-big", vcpus=4))
    assert r.status == EXIT_DENIED and "has 4 vCPUs" in r.message and "at most 3" in r.message
    # number of VMs
    assert call(svc, anna, "define", xml=vm("a-1", vcpus=2)).ok
    assert call(svc, anna, "define", xml=vm("a-2", vcpus=2, mib=128)).ok
    r = call(svc, anna, "define", xml=vm("a-3"))
    assert r.status == EXIT_DENIED and "at most 2 VMs and has 2 (a-1, a-2)" in r.message
    # vCPUs and memory of the running VMs
    assert call(svc, anna, "start", domain="a-1").ok
    r = call(svc, anna, "start", domain="a-2")
    assert r.status == EXIT_DENIED, r.message
    assert "may run 3 vCPUs at once; its running VMs hold 2 (a-1 2)" in r.message
    assert "'a-2' needs 2: 4 > 3" in r.message
    assert svc.backend.lookup("a-2").id is None
    assert call(svc, anna, "destroy", domain="a-1").ok
    assert call(svc, anna, "start", domain="a-2").ok
    uuid = f"<uuid>{svc.backend.lookup('a-1').uuid}</uuid>"
    again = vm("a-1", vcpus=1, mib=128).replace("</name>", f"</name>{uuid}")
    r = call(svc, ROOT, "define", xml=again)  # redefined: not one more VM
    assert r.ok, r.message
    r = call(svc, ROOT, "start", domain="a-1")  # root's requests too: the realm's limit
    assert r.status == EXIT_DENIED, r.message
    assert "may run 192.00 MiB of memory at once; its running VMs hold 128.00 MiB" in r.message
    assert "'a-1' needs 128.00 MiB: 256.00 MiB > 192.00 MiB" in r.message
    # realm b has no quota
    for n in range(3):
        assert call(svc, ids["bert"], "define", xml=vm(f"b-{n}", vcpus=8)).ok
    outcomes = [x for x in audit(cfg) if x.get("type") == "outcome"]
    assert any("may run 3 vCPUs" in x.get("outcome", "") for x in outcomes), outcomes[-3:]


def test_realm_setup_defines_and_starts_the_pool(env, tmp_path):
    svc, *_ = env
    path = tmp_path / "pool-c"
    r = call(svc, ROOT, "realm", action="create", realm="c", pool="pool-c", path=str(path))
    try:
        assert r.status == EXIT_OK, r.message
        assert "defined directory pool 'pool-c'" in r.data["message"]
        info = svc.backend.pool_info("pool-c")
        assert info.active and info.autostart and info.path == str(path)
        r = call(svc, ROOT, "realm", action="setup", realm="c")
        assert r.status == EXIT_OK and "pool" not in r.data["message"].split(":", 1)[1]
    finally:
        assert call(svc, ROOT, "realm", action="rm", realm="c").status in (EXIT_OK, EXIT_FAILED)


def test_xl_says_it_has_no_storage_pools():
    from secured_virt.backends.base import BackendError
    from secured_virt.backends.xl_backend import XlBackend

    xl = XlBackend.__new__(XlBackend)
    for call_ in (lambda: xl.vol_list("p"), lambda: xl.vol_create_as("p", "v", 1)):
        with pytest.raises(BackendError) as exc:
            call_()
        assert exc.value.code == "unsupported" and "no storage pools" in str(exc.value)


def test_missing_pool_is_told_only_after_the_gate(env):
    svc, ids, *_ = env
    r = call(svc, ROOT, "vol-list", pool="nope")
    assert r.status == EXIT_FAILED and "storage pool 'nope' not found" in r.message
    r = call(svc, ids["anna"], "vol-list", pool="nope")
    assert r.status == EXIT_DENIED and r.check == "realm"


def test_the_quota_check_waits_while_another_process_holds_the_quota_lock(env):
    """The quota's check-then-act is host-wide, not per process: root's direct svirsh (or
    any other process) checking a quota holds ``<realm_state_dir>/quota.lock``, and a
    request here waits for it instead of taking the realm's last share beside it."""
    import subprocess
    import threading

    svc, ids, users, cfg, (pa, pb), etc = env
    write_root(etc / "realms.xml", realms_xml(users, pa, pb, '<Quota vms="1"/>'))
    assert svc.reload()["ok"]
    lock = Path(cfg.realm_state_dir) / "quota.lock"
    lock.parent.mkdir(mode=0o700, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(lock),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = {}
        t = threading.Thread(
            target=lambda: result.update(r=call(svc, ids["anna"], "define", xml=domain_xml("a-1")))
        )
        t.start()
        t.join(1.0)
        assert t.is_alive(), "the quota check ran while another process held the quota lock"
        assert "r" not in result
    finally:
        holder.stdin.close()
        holder.wait(10)
    t.join(30)
    assert result["r"].ok, result["r"].message
    assert oct(lock.stat().st_mode & 0o777) == "0o600"
    r = call(svc, ids["anna"], "define", xml=domain_xml("a-2"))
    assert r.status == EXIT_DENIED and "at most 1 VM" in r.message, r.message
