"""Realm quotas hold for a change of amount too: setvcpus, setmem, setmaxmem (issue 15, Storage).

define, create and start check a realm's ``<Quota vcpus memory>``; the resizing commands did
not, so a tenant could define a VM within the quota and then grow it past the limit.  Now the
``realm_quota`` step (service/mediation.py) checks every raise: the definition it leaves must
fit the limits alone, with define's words; a raise of the running instance must fit beside the
realm's other running VMs, with start's words (the realm's use counted by the same
``_realm_usage``); a refusal is exit 3 and audited.  A change that raises nothing is never
refused.

Through the real command path: a real svirtd on the libvirt test driver, the tenants real
other uids (setpriv) sending their requests over its socket.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "daemon")]

from svtd_helpers import RealEnv, call_as, write_root_file  # noqa: E402
from tenancy_helpers import local_accounts, root_call  # noqa: E402

from secured_virt.tenancy import quotas  # noqa: E402
from secured_virt.tenancy.model import Quota  # noqa: E402

PA = """<RolePolicyDefinition>
  <Role name="Everything">
    <ManageVM type="all"/>
    <ControlOperation><Accept><operation id="*"/></Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""
MIB = 1024 * 1024

root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="real uids and root-owned files: run as root"
)


def vm_xml(name: str, vcpus: int = 1, mib: int = 64, current_vcpus: int | None = None) -> str:
    cur = f" current='{current_vcpus}'" if current_vcpus else ""
    return (
        f"<domain type='test'><name>{name}</name><memory unit='KiB'>{mib * 1024}</memory>"
        f"<vcpu{cur}>{vcpus}</vcpu><os><type>hvm</type></os><devices/></domain>"
    )


@pytest.fixture
def quota_env():
    with local_accounts() as acc:
        u = {k: acc.user(k) for k in ("anna", "bert")}
        env = RealEnv(realms="{node}.realms.xml", realm_state_dir="{node}.state")
        try:
            ua = "".join(
                f'<User name="{n}"><UserRole role="Everything"/></User>' for n in u.values()
            )
            write_root_file(env.ua, f"<UserConfiguration>{ua}</UserConfiguration>")
            write_root_file(env.pa, PA)
            realms = f"""<Realms>
  <Realm name="a"><Member user="{u["anna"]}"/><VM pattern="a-*"/>
    <Quota vcpus="3" memory="192M"/></Realm>
  <Realm name="b"><Member user="{u["bert"]}"/><VM pattern="b-*"/></Realm>
</Realms>"""
            write_root_file(Path(f"{env.node}.realms.xml"), realms)
            env.d = env.daemon().start().wait_ready()
            yield env, {k: pwd.getpwnam(v) for k, v in u.items()}
        finally:
            if getattr(env, "d", None) is not None:
                env.d.stop()
            env.cleanup()


@root_only
@pytest.mark.integration
def test_a_raise_past_the_realm_quota_is_refused_as_define_refuses_it(
    quota_env, readable_src, as_user
):
    env, u = quota_env

    def call(who, command, **args):
        return call_as(as_user, u[who], readable_src, env.socket, command, args)

    assert call("anna", "define", xml=vm_xml("a-1", vcpus=2))["status"] == 0
    assert call("anna", "define", xml=vm_xml("a-2"))["status"] == 0
    assert call("anna", "start", domain="a-1")["status"] == 0

    # memory: a definition grown past what the realm may run at all, with define's words
    r = call("anna", "setmaxmem", domain="a-2", size="256M")
    assert r["status"] == 3, r
    d = call("anna", "define", xml=vm_xml("a-big", mib=256))
    assert d["status"] == 3, d
    said = d["message"].split(": ", 1)[1].replace("a-big", "a-2")
    assert r["message"] == f"setmaxmem: {said}", (r, d)
    assert "'a-2' has 256.00 MiB of memory and realm 'a' may run at most 192.00 MiB" in said
    r = call("anna", "setmaxmem", domain="a-2", size="256M", config=True)  # the --config form
    assert r["status"] == 3 and "could never start" in r["message"], r
    dominfo = call("anna", "dominfo", domain="a-2")["data"]
    assert dominfo["max_mem_kib"] == 64 * 1024  # nothing changed

    # within the limit alone it is a definition define accepts, even beside a-1 running (as
    # define counts it: running VMs weigh at start) ...
    r = call("anna", "setmaxmem", domain="a-2", size="160M")
    assert r["status"] == 0, r
    assert call("anna", "define", xml=vm_xml("a-3", mib=160))["status"] == 0
    assert call("anna", "undefine", domain="a-3")["status"] == 0
    # ... and its start then counts a-1 running, as for any VM
    r = call("anna", "start", domain="a-2")
    assert r["status"] == 3, r
    assert "its running VMs hold 64.00 MiB (a-1 64.00 MiB)" in r["message"]
    assert call("anna", "setmaxmem", domain="a-2", size="128M")["status"] == 0
    r = call("anna", "start", domain="a-2")
    assert r["status"] == 0, r

    # vCPUs of a running VM, --live: beside the realm's other running VMs, with start's words
    r = call("anna", "setvcpus", domain="a-2", count="2", live=True)
    assert r["status"] == 3, r
    assert r["message"] == (
        "setvcpus: realm 'a' may run 3 vCPUs at once; its running VMs hold 2 (a-1 2) and "
        "'a-2' needs 2: 4 > 3. Stop one, or ask root to raise the realm's <Quota vcpus=...>"
    )
    r = call("anna", "setvcpus", domain="a-1", count="4", config=True)
    assert r["status"] == 3, r
    assert "'a-1' has 4 vCPUs and realm 'a' may run at most 3 at once" in r["message"]
    # root's requests too: the realm's limit
    r = root_call(env, "setvcpus", {"domain": "a-2", "count": "2", "live": True})
    assert r["status"] == 3 and "4 > 3" in r["message"], r

    # refusals are audited outcomes, with the quota's sentence
    outs = [x for x in env.audit_records() if x.get("type") == "outcome"]
    for op in ("setmaxmem", "setvcpus"):
        assert any(x["op"] == op and "Quota" in x.get("outcome", "") for x in outs), op


@root_only
@pytest.mark.integration
def test_changes_within_the_quota_or_raising_nothing_work(quota_env, readable_src, as_user):
    env, u = quota_env

    def call(who, command, **args):
        return call_as(as_user, u[who], readable_src, env.socket, command, args)

    xml = vm_xml("a-1", vcpus=3, mib=128, current_vcpus=1)
    assert call("anna", "define", xml=xml)["status"] == 0
    assert call("anna", "start", domain="a-1")["status"] == 0
    # up to the maximum already counted (3 vCPUs, 128 MiB): no quota question
    assert call("anna", "setvcpus", domain="a-1", count="3", live=True)["status"] == 0
    assert call("anna", "setmem", domain="a-1", size="96M", live=True)["status"] == 0
    info = call("anna", "dominfo", domain="a-1")["data"]
    assert (info["vcpus"], info["mem_kib"]) == (3, 96 * 1024), info
    # a raise of the next start's maximum, within the limit
    r = call("anna", "setmaxmem", domain="a-1", size="192M")
    assert r["status"] == 0, r
    # shrinking raises nothing (test_only_what_grows_is_checked: even over a lowered quota)
    assert call("anna", "setmaxmem", domain="a-1", size="160M")["status"] == 0
    # a realm without a quota: anything the hypervisor takes
    assert call("bert", "define", xml=vm_xml("b-1"))["status"] == 0
    assert call("bert", "setmaxmem", domain="b-1", size="4G")["status"] == 0


# -- the arithmetic, on numbers ----------------------------------------------------------------
@pytest.mark.parametrize(
    "live, config, running, sides",
    [
        (False, False, True, ("live",)),  # --current on a running VM
        (False, False, False, ("config",)),  # --current on an inactive VM
        (True, False, True, ("live",)),
        (False, True, True, ("config",)),
        (True, True, True, ("live", "config")),
        (True, False, False, ()),  # --live on an inactive VM: the hypervisor refuses it
    ],
)
def test_a_resize_reaches_the_definitions_virsh_flags_name(live, config, running, sides):
    assert quotas.Resize("vcpus", 2, live=live, config=config).sides(running) == sides


def test_resized_counts_as_domain_size_counts():
    xml = (
        "<domain><name>x</name><memory unit='MiB'>64</memory>"
        "<maxMemory slots='4' unit='MiB'>512</maxMemory><vcpu current='1'>2</vcpu></domain>"
    )
    assert quotas.resized(xml, quotas.Resize("vcpus", 2)) == ((2, 512 * MIB), (2, 512 * MIB))
    assert quotas.resized(xml, quotas.Resize("vcpus", 6)) == ((2, 512 * MIB), (6, 512 * MIB))
    # setmaxmem replaces <memory>; a hot-plug <maxMemory> stays the ceiling
    assert quotas.resized(xml, quotas.Resize("maxmem", 128 * MIB))[1] == (2, 512 * MIB)
    plain = "<domain><name>x</name><memory>65536</memory><vcpu>1</vcpu></domain>"
    assert quotas.resized(plain, quotas.Resize("maxmem", 32 * MIB)) == (
        (1, 64 * MIB),
        (1, 32 * MIB),
    )
    assert quotas.resized(plain, quotas.Resize("memory", 96 * MIB))[1] == (1, 96 * MIB)
    with pytest.raises(ValueError, match="unknown resize"):
        quotas.Resize("disks", 1)


def test_only_what_grows_is_checked():
    q = Quota(vcpus=2, memory=128 * MIB)
    usage = quotas.Usage({"x": True, "y": True}, {"x": (1, 64 * MIB), "y": (4, 512 * MIB)})
    # y is over both limits (root defined it); lowering its memory is not refused
    assert (
        quotas.resize_refusal(
            "a", q, usage, "y", before=(4, 512 * MIB), after=(4, 256 * MIB), running=True
        )
        is None
    )
    # raising memory is checked on memory only, even though its vCPUs are over
    why = quotas.resize_refusal(
        "a", q, usage, "y", before=(4, 512 * MIB), after=(4, 1024 * MIB), running=False
    )
    assert why and "1.00 GiB of memory" in why and "vCPU" not in why
    # beside the others running: x's 1 vCPU + 2 > 2
    why = quotas.resize_refusal(
        "a", q, usage.without("y"), "z", before=(1, MIB), after=(2, MIB), running=True
    )
    assert why and "its running VMs hold 1 (x 1) and 'z' needs 2: 3 > 2" in why
