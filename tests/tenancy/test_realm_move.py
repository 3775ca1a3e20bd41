"""Only root moves a VM between realms (issue 15): ``svirt-admin realm move VM REALM``.

Through a real svirtd on real QEMU (the fixture of test_realm_dac_qemu): realm A's admin and
realm B's member are refused (exit 3, audited); root's move renames the VM's image into
realm B's storage, gives it to B's QEMU user (0600), records the new realm and B's DAC label
in the definition; B's tenant can then start it and its QEMU runs as B's user (/proc), while
A's tenant no longer reaches it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "daemon")]

from test_realm_dac_qemu import guest_xml, root_call, two_realms  # noqa: E402, F401

from secured_virt.confinement import dac  # noqa: E402
from secured_virt.testing.libvirtd import qemu_processes  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="QEMU, system users and real uids need root"),
]


def test_only_root_moves_a_vm_between_realms(two_realms, readable_src, as_user):  # noqa: F811
    t = two_realms
    vm = f"{t.ra}-mv"
    old_img, new_img = t.scratch / "a" / "mv.raw", t.scratch / "b" / "mv.raw"

    def call(who, command, args):
        return t.call(who, command, args, as_user=as_user, src=readable_src)

    assert call("ta", "define", {"xml": guest_xml(vm, str(old_img))})["status"] == 0
    move = {"action": "move", "realm": t.rb, "vm": vm}
    for who in ("ta", "tb"):  # A's realm admin, B's member: neither is root
        r = call(who, "realm", move)
        assert r["status"] == 3, r
        assert "only root moves a VM between realms" in r["message"], r
    assert old_img.exists() and not new_img.exists()
    denied = [
        r
        for r in t.env.audit_records()
        if r.get("op") == "realm-admin" and r.get("verdict") == "denied"
    ]
    assert {r["uid"] for r in denied} >= {t.tenants["ta"].pw_uid, t.tenants["tb"].pw_uid}

    r = root_call(t.env, "realm", move)
    assert r["status"] == 0, r
    assert f"{old_img} -> {new_img}" in r["data"]["message"]
    ub = pwd_of(t.rb)
    st = os.stat(new_img)
    assert not old_img.exists()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (ub.pw_uid, ub.pw_gid, 0o600)
    conf = t.backend.dumpxml(vm, inactive=True, security_info=True)
    assert dac.dac_problem(conf, ub.pw_uid, ub.pw_gid) is None
    moved = [r for r in t.env.audit_records() if "moves VM" in str(r.get("rule", ""))]
    assert moved and moved[-1]["verdict"] == "allowed"

    # the VM is realm B's now: B's tenant starts it, as B's user; A's tenant is refused
    assert call("ta", "dominfo", {"domain": vm})["status"] == 3
    r = call("tb", "start", {"domain": vm})
    assert r["status"] == 0, r
    (pid,) = qemu_processes(vm)
    assert dac.process_ids(pid) == (ub.pw_uid, ub.pw_gid)
    assert call("tb", "dominfo", {"domain": vm})["data"]["realm"] == t.rb
    # a running VM is not moved (its QEMU cannot change uid)
    r = root_call(t.env, "realm", {"action": "move", "realm": t.ra, "vm": vm})
    assert r["status"] == 1 and "shut it down first" in r["message"], r


def pwd_of(realm: str):
    import pwd

    return pwd.getpwnam(dac.realm_user_name(realm))
