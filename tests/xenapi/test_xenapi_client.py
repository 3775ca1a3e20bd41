"""The secured Xen-API with the real PyPI ``XenAPI`` client: PAM login through svirtd, the
caller's own VMs, lifecycle on the test driver, refusals with the gate's reason, policy calls
by a policy manager, logout; and the audit records carry via=xenapi and the client address."""

from __future__ import annotations

from pathlib import Path

import pytest
import XenAPI

from secured_virt.access.audit import verify

from .conftest import PASSWORDS

pytestmark = pytest.mark.integration


def names(session) -> dict[str, str]:
    recs = session.xenapi.VM.get_all_records()
    return {r["name_label"]: ref for ref, r in recs.items()}


def test_login_list_start_stop_through_pam_and_the_gate(xen):
    s = xen.login("svt-alice")
    vms = names(s)
    # the same filter as svirsh list: only alice's two VMs, nobody else's
    assert set(vms) == {"alice-web", "alice-db"}
    assert sorted(s.xenapi.VM.get_all()) == sorted(vms.values())
    db = vms["alice-db"]
    assert s.xenapi.VM.get_by_name_label("alice-db") == [db]
    assert s.xenapi.VM.get_by_name_label("bob-build") == []  # not hers: not even its ref
    assert s.xenapi.VM.get_name_label(db) == "alice-db"
    assert s.xenapi.VM.get_power_state(db) == "Halted"
    assert s.xenapi.VM.start(db, False, False) == ""
    assert s.xenapi.VM.get_power_state(db) == "Running"
    rec = s.xenapi.VM.get_record(db)
    assert rec["uuid"] == db and rec["power_state"] == "Running"
    assert s.xenapi.VM.get_all_records()[db] == rec  # the bulk answer (kept, byte parts)
    assert rec["other_config"]["owner"] == "alice"
    # starting it again: Xen's VM_BAD_POWER_STATE
    with pytest.raises(XenAPI.Failure) as err:
        s.xenapi.VM.start(db, False, False)
    assert err.value.details[:2] == ["VM_BAD_POWER_STATE", db]
    assert s.xenapi.VM.hard_shutdown(db) == ""
    assert s.xenapi.VM.get_power_state(db) == "Halted"
    web = vms["alice-web"]
    assert s.xenapi.VM.pause(web) == ""
    assert s.xenapi.VM.get_power_state(web) == "Paused"
    assert s.xenapi.VM.unpause(web) == ""
    assert s.xenapi.VM.get_power_state(web) == "Running"
    s.xenapi.session.logout()

    recs = xen.audit()
    login = [r for r in recs if r.get("op") == "session-login" and r.get("verdict") == "allowed"]
    assert login and login[-1]["via"] == "xenapi" and login[-1]["user"] == "svt-alice"
    assert login[-1]["peer"].startswith("127.0.0.1:")
    start = [r for r in recs if r.get("op") == "start" and r.get("type") == "decision"][-1]
    assert start["via"] == "xenapi" and start["user"] == "svt-alice"
    assert start["vm"] == "alice-db" and start["verdict"] == "allowed"
    assert start["session"] == login[-1]["session"] and start["peer"].startswith("127.0.0.1:")
    assert any(r.get("op") == "session-logout" for r in recs)
    # no password in any log
    for text in (Path(xen.env.audit_log).read_text(), xen.svirtd.log(), xen.log()):
        assert PASSWORDS["svt-alice"] not in text
    assert verify(xen.env.audit_log).ok


def test_refusal_on_another_users_vm_carries_the_gates_reason(xen):
    alice = xen.login("svt-alice")
    carol = xen.login("svt-carol")  # the auditor sees every VM, may start none
    everything = names(carol)
    assert "bob-build" in everything and "alice-web" in everything
    bob_build = everything["bob-build"]
    # alice cannot even name bob's VM: its ref is not in her listing
    with pytest.raises(XenAPI.Failure) as err:
        alice.xenapi.VM.hard_shutdown(bob_build)
    assert err.value.details == ["HANDLE_INVALID", "VM", bob_build]
    # carol sees it but may not stop it: the gate's RBAC refusal, word for word
    with pytest.raises(XenAPI.Failure) as err:
        carol.xenapi.VM.hard_shutdown(bob_build)
    code, reason, check = err.value.details
    assert code == "PERMISSION_DENIED" and check == "rbac"
    assert "'destroy'" in reason and "bob-build" in reason and "svt-carol" in reason
    assert carol.xenapi.VM.get_power_state(bob_build) == "Running"
    denied = [r for r in xen.audit() if r.get("op") == "destroy" and r["type"] == "decision"][-1]
    assert denied["verdict"] == "denied" and denied["via"] == "xenapi"
    assert denied["user"] == "svt-carol"


def test_wrong_password_unknown_user_and_root_are_refused_and_audited(xen):
    s = xen.session()
    with pytest.raises(XenAPI.Failure) as err:
        s.xenapi.login_with_password("svt-alice", "wrong", "1.0", "pytest")
    assert err.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    assert err.value.details[1] == "svt-alice"
    with pytest.raises(XenAPI.Failure) as err:
        s.xenapi.login_with_password("no-such-user", "x")
    assert err.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    with pytest.raises(XenAPI.Failure) as err:
        s.xenapi.login_with_password("root", "x")
    assert "session_allow_root" in err.value.details[2]
    fails = [r for r in xen.audit() if r.get("op") == "session-login" and r["type"] == "decision"]
    assert [r["verdict"] for r in fails] == ["denied"] * 3
    assert [r["check"] for r in fails] == ["pam", "pam", "identity"]


def test_logout_then_the_old_session_is_refused(xen):
    s = xen.login("svt-alice")
    token = s.handle
    assert names(s)
    s.xenapi.session.logout()
    raw = xen.raw()
    # the PyPI client would log in again by itself on SESSION_INVALID; ask on the wire
    res = raw.VM.get_all(token)
    assert res == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", token]}
    res = raw.session.logout(token)
    assert res["ErrorDescription"][0] == "SESSION_INVALID"
    bad = [r for r in xen.audit() if r.get("op") == "session" and r["check"] == "session"]
    assert bad and bad[-1]["verdict"] == "denied" and bad[-1]["via"] == "xenapi"


def test_policy_calls_by_a_policy_manager(xen_acm):
    import policy

    dave = xen_acm.login("svt-dave")
    assert dave.xenapi.XSPolicy.get_xstype() == 1
    state = dave.xenapi.XSPolicy.get_xspolicy()
    assert (
        state["xserr"] == 0 and state["type"] == 1 and "<SecurityPolicyDefinition" in state["repr"]
    )
    ref = state["xs_ref"]
    header = dave.xenapi.ACMPolicy.get_header(ref)
    assert header["policyname"] and header["version"]
    assert dave.xenapi.ACMPolicy.get_binary(ref) == dave.xenapi.ACMPolicy.get_enforced_binary()
    assert isinstance(dave.xenapi.ACMPolicy.get_map(ref), str)
    # install a real policy (seed 000's set_xspolicy with LOAD|BOOT)
    xml = policy.examples()["example.client_v1"].read_text()
    new = dave.xenapi.XSPolicy.set_xspolicy(1, xml, 3, True)
    # the running demo guests carry no label this policy knows: xend's answer is the
    # state with an XSERR code, not a transport error
    assert isinstance(new["xserr"], int)
    # a user without policy rights is refused with the gate's reason
    alice = xen_acm.login("svt-alice")
    with pytest.raises(XenAPI.Failure) as err:
        alice.xenapi.XSPolicy.get_xspolicy()
    assert err.value.details[0] == "PERMISSION_DENIED" and err.value.details[2] == "rbac"
    assert "policy-show" in err.value.details[1]
    rec = [r for r in xen_acm.audit() if r.get("op") == "policy-show" and r["type"] == "decision"]
    assert {r["user"] for r in rec} == {"svt-dave", "svt-alice"}
    assert all(r["via"] == "xenapi" for r in rec)


def test_unknown_methods_and_wrong_arity(xen):
    raw = xen.raw()
    s = xen.login("svt-alice")
    res = raw.VM.frobnicate(s.handle)
    assert res["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
    res = raw.VM.get_record(s.handle)
    assert res["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", 2, 1]
    res = raw.session.login_with_password("svt-alice")
    assert res["ErrorDescription"][0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
    res = raw.VM.get_record(s.handle, ["not", "a", "ref"])
    assert res["ErrorDescription"][0] == "HANDLE_INVALID"
    # __dunder__ and private names are just unknown methods
    res = raw.__getattr__("_XenApi__init__")(s.handle)
    assert res["ErrorDescription"][0] == "MESSAGE_METHOD_UNKNOWN"
