"""Realms through a real svirtd serving real other uids (setpriv), two realms on the demo node.

The UA/PA give every test user a role on *all* VMs: only the realm step keeps them apart.
Members see and act only in their realm; the realm admin of ``a`` manages ``a`` through
svirtd without sudo and is refused (exit 3, audited) for anything of ``b``; a ``gpasswd``
change makes a user a member of ``a`` without restarting svirtd (NSS, within the 5 s cache).
The clients run with ``--clear-groups``: membership comes from NSS, never from the process.
"""

from __future__ import annotations

import pwd
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "daemon")]

from svtd_helpers import call_as  # noqa: E402
from tenancy_helpers import (  # noqa: E402
    REAL_UIDS,
    local_accounts,
    realm_svirtd_host,
    write_realm_policy,
)

pytestmark = REAL_UIDS

PA = """<RolePolicyDefinition>
  <Role name="Everyone">
    <ManageVM type="all"/>
    <ControlOperation><Accept>
      <operation name="list"/><operation name="dominfo"/><operation name="start"/>
      <operation name="destroy"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


@pytest.fixture
def realm_env():
    with local_accounts() as acc, realm_svirtd_host() as env:
        ga = acc.group("ga")
        u = {
            "aadm": acc.user("aadm"),
            "abe": acc.user("abe", groups=[ga]),
            "bert": acc.user("bert"),
            "newbie": acc.user("newbie"),
            "late": acc.user("late"),
        }
        realms = f"""<Realms>
  <Realm name="a"><Admin user="{u["aadm"]}"/><Member group="{ga}"/><VM pattern="alice-*"/></Realm>
  <Realm name="b"><Member user="{u["bert"]}"/><VM pattern="bob-*"/></Realm>
</Realms>"""
        in_ua = [name for k, name in u.items() if k != "newbie"]
        write_realm_policy(env, in_ua, "Everyone", PA, realms)
        env.d = env.daemon().start().wait_ready()
        yield env, acc, ga, {k: pwd.getpwnam(v) for k, v in u.items()}


def names(reply) -> list[str]:
    return sorted(d["name"] for d in reply["data"]["domains"])


def test_members_stay_in_their_realm(realm_env, readable_src, as_user):
    env, _acc, _ga, u = realm_env

    def call(who, command, args):
        return call_as(as_user, u[who], readable_src, env.socket, command, args)

    assert names(call("abe", "list", {"all": True})) == ["alice-db", "alice-web"]
    assert names(call("bert", "list", {"all": True})) == ["bob-build"]
    assert names(call("late", "list", {"all": True})) == ["carol-lab", "shared-dns"]
    no = call("abe", "destroy", {"domain": "bob-build"})
    assert no["status"] == 3 and no["check"] == "realm", no
    assert "belongs to realm 'b'" in no["message"]
    no = call("bert", "dominfo", {"domain": "alice-web"})
    assert no["status"] == 3 and no["check"] == "realm"
    assert call("bert", "dominfo", {"domain": "bob-build"})["status"] == 0
    recs = [r for r in env.audit_records() if r["type"] == "decision" and r["check"] == "realm"]
    assert {r["realm"] for r in recs} == {"a", "b"}
    assert all(r["via"] == "svirtd" for r in recs)


def test_realm_admin_through_svirtd_is_confined_to_her_realm(realm_env, readable_src, as_user):
    env, _acc, _ga, u = realm_env

    def realm(who, action, name, **kw):
        return call_as(
            as_user,
            u[who],
            readable_src,
            env.socket,
            "realm",
            {"action": action, "realm": name, **kw},
        )

    newbie = u["newbie"].pw_name
    assert realm("aadm", "add-member", "a", user=newbie)["status"] == 0
    r = realm("aadm", "grant", "a", role="viewer", operations=["dominfo"], vms=["alice-web"])
    assert r["status"] == 0, r
    r = realm("aadm", "assign", "a", user=newbie, role="viewer")
    assert r["status"] == 0 and "gains" in r["data"]["impact"], r
    ok = call_as(as_user, u["newbie"], readable_src, env.socket, "dominfo", {"domain": "alice-web"})
    assert ok["status"] == 0, ok
    for refused in (
        realm("aadm", "grant", "a", role="viewer", operations=["start"], vms=["bob-build"]),
        realm("aadm", "add-member", "a", user=u["bert"].pw_name),
        realm("aadm", "add-member", "b", user=newbie),
        realm("aadm", "assign", "a", user=u["late"].pw_name, role="viewer"),
        realm("bert", "add-member", "b", user=newbie),
        realm("aadm", "create", "c"),
    ):
        assert refused["status"] == 3, refused
    recs = [
        r for r in env.audit_records() if r.get("op") == "realm-admin" and r["type"] == "decision"
    ]
    assert sum(r["verdict"] == "denied" for r in recs) >= 6
    assert all(r["uid"] in (u["aadm"].pw_uid, u["bert"].pw_uid) for r in recs)
    state = Path(f"{env.node}.state") / "a.xml"
    st = state.stat()
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600


def test_group_membership_change_takes_effect_without_restart(realm_env, readable_src, as_user):
    env, acc, ga, u = realm_env
    pid = env.d.proc.pid

    def listing():
        return names(call_as(as_user, u["late"], readable_src, env.socket, "list", {"all": True}))

    assert listing() == ["carol-lab", "shared-dns"]
    acc.add(u["late"].pw_name, ga)
    deadline = time.monotonic() + 15
    while listing() != ["alice-db", "alice-web"]:
        assert time.monotonic() < deadline, "the new group membership was never seen"
        time.sleep(0.5)
    acc.remove(u["late"].pw_name, ga)
    deadline = time.monotonic() + 15
    while listing() != ["carol-lab", "shared-dns"]:
        assert time.monotonic() < deadline, "the removed group membership was never dropped"
        time.sleep(0.5)
    assert env.d.proc.pid == pid and env.d.proc.poll() is None  # the same svirtd throughout
