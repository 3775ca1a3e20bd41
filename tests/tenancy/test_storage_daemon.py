"""Realm pools through a real svirtd serving real other uids (setpriv), and svirsh's output
against virsh's on the same kind of pool.

The host (a test-driver node file) has the two realms' directory pools, as root's set-up
leaves them; the UA/PA give every test user every operation on every object, so only the
realm step keeps a tenant in her own pool.  Clients run with ``--clear-groups``.
"""

from __future__ import annotations

import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from secured_virt.testing.asuid import setpriv_prefix

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "daemon")]

from svtd_helpers import PY, call_as  # noqa: E402
from tenancy_helpers import (  # noqa: E402
    REAL_UIDS,
    local_accounts,
    realm_svirtd_host,
    write_realm_policy,
)

pytestmark = REAL_UIDS

PA = """<RolePolicyDefinition>
  <Role name="Everything">
    <ManageVM type="all"/>
    <ControlOperation><Accept><operation id="*"/></Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


@pytest.fixture
def pool_env():
    with local_accounts() as acc, realm_svirtd_host() as env:
        u = {k: acc.user(k) for k in ("anna", "bert")}
        pa, pb = env.base / "pool-a", env.base / "pool-b"
        node = env.node.read_text()
        pools = "".join(
            f"<pool type='dir'><name>{n}</name><target><path>{p}</path></target></pool>"
            for n, p in (("pool-a", pa), ("pool-b", pb))
        )
        env.node.write_text(node.replace("</node>", pools + "</node>"))
        realms = f"""<Realms>
  <Realm name="a"><Member user="{u["anna"]}"/><Storage pool="pool-a" path="{pa}"/>
    <VM pattern="a-*"/><Quota bytes="8M"/></Realm>
  <Realm name="b"><Member user="{u["bert"]}"/><Storage pool="pool-b" path="{pb}"/>
    <VM pattern="b-*"/></Realm>
</Realms>"""
        write_realm_policy(env, u.values(), "Everything", PA, realms)
        env.d = env.daemon().start().wait_ready()
        yield env, {k: pwd.getpwnam(v) for k, v in u.items()}, (pa, pb)


def test_tenants_manage_volumes_in_their_own_pool_only(pool_env, readable_src, as_user):
    env, u, (pa, pb) = pool_env

    def call(who, command, **args):
        return call_as(as_user, u[who], readable_src, env.socket, command, args)

    r = call("anna", "vol-create-as", pool="pool-a", name="web.qcow2", capacity="4M",
             format="qcow2")  # fmt: skip
    assert r["status"] == 0 and r["data"]["message"] == "Vol web.qcow2 created", r
    assert call("bert", "vol-create-as", name="b.img", capacity="1M")["status"] == 0
    listed = call("anna", "vol-list")
    assert [(v["name"], v["path"]) for v in listed["data"]["volumes"]] == [
        ("web.qcow2", f"{pa}/web.qcow2")
    ]
    info = call("anna", "vol-info", vol=f"{pa}/web.qcow2")
    assert info["data"]["capacity"] == 4 << 20 and info["data"]["pool"] == "pool-a"
    # the other realm's pool and volumes: refused, exit 3, by the realm check
    for who, command, args in (
        ("anna", "vol-list", {"pool": "pool-b"}),
        ("anna", "vol-delete", {"vol": f"{pb}/b.img"}),
        ("anna", "vol-create-as", {"pool": "pool-b", "name": "x", "capacity": "1M"}),
        ("bert", "vol-info", {"vol": "web.qcow2", "pool": "pool-a"}),
    ):
        r = call(who, command, **args)
        assert r["status"] == 3 and r["check"] == "realm", (command, r)
    # the quota names the limit and the use
    r = call("anna", "vol-create-as", name="big", capacity="5M")
    assert r["status"] == 3, r
    assert "may hold 8.00 MiB of volumes; its 1 volume holds 4.00 MiB" in r["message"]
    assert call("anna", "vol-delete", vol="web.qcow2", pool_opt=None, pool="pool-a")["status"] == 0
    assert call("anna", "vol-list", pool="pool-a")["data"]["volumes"] == []
    assert [v["name"] for v in call("bert", "vol-list")["data"]["volumes"]] == ["b.img"]
    recs = [r for r in env.audit_records() if r["type"] == "decision" and r["op"].startswith("vol")]
    assert {r["uid"] for r in recs} == {u["anna"].pw_uid, u["bert"].pw_uid}
    assert all(r["via"] == "svirtd" for r in recs)
    assert {r.get("realm") for r in recs if r["verdict"] == "denied"} == {"a", "b"}


def _svirsh(argv, user=None, tree=None):
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from secured_virt.cli.svirsh import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [*setpriv_prefix(user), PY, "-I", "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
        cwd="/",
    )


def test_svirsh_prints_volumes_as_virsh_does(pool_env, readable_src):
    """The same pool, the same volume, one side virsh on a fresh node, the other svirsh as
    anna through svirtd: vol-create-as, vol-list (plain and --details), vol-info (scaled and
    --bytes) and vol-delete print the same bytes."""
    env, u, (pa, _pb) = pool_env
    sock = ["--socket", env.socket]
    steps = [
        ["vol-create-as", "pool-a", "disk1.img", "4M"],
        ["vol-list", "pool-a"],
        ["vol-list", "pool-a", "--details"],
        ["vol-info", "disk1.img", "--pool", "pool-a"],
        ["vol-info", "--bytes", "--vol", "disk1.img", "--pool", "pool-a"],
        ["vol-delete", "disk1.img", "--pool", "pool-a"],
    ]
    script = "; ".join(" ".join(s) for s in steps)
    marks = subprocess.run(
        ["/usr/bin/virsh", "-c", f"test://{env.node}", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
    )
    assert marks.returncode == 0, marks.stderr
    outs = [_svirsh([*sock, *s], u["anna"], readable_src) for s in steps]
    assert all(o.returncode == 0 for o in outs), [o.stderr for o in outs]
    mine = "".join(o.stdout for o in outs)
    assert mine == marks.stdout, (mine, marks.stdout)
    assert str(pa) in mine
