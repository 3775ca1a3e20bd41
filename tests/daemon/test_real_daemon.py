"""The real svirtd (console script, config file, real Service, rbac, libvirt test driver, audit
log) serving real other uids - the same use-case layer as svirsh's direct mode."""

from __future__ import annotations

import json
import os
import signal

import pytest
from svtd_helpers import (
    PY,
    UA_XML,
    RealEnv,
    call_as,
    client_snippet,
    running_svirtd,
    wait_for,
    write_root_file,
)

from secured_virt import client
from secured_virt.access import audit
from secured_virt.requests import Request

pytestmark = pytest.mark.integration


@pytest.fixture
def env():
    with running_svirtd() as e:
        yield e


def names(reply):
    return sorted(d["name"] for d in reply["data"]["domains"])


def decisions(env, **match):
    return [
        r
        for r in env.audit_records()
        if r["type"] == "decision" and all(r.get(k) == v for k, v in match.items())
    ]


def test_list_is_filtered_by_the_kernel_identity(env, test_users, readable_src, as_user):
    def listing(user, args):
        return call_as(as_user, test_users[user], readable_src, env.socket, "list", args)

    assert names(listing("svt-alice", {"all": True})) == ["alice-db", "alice-web"]
    assert names(listing("svt-bob", {"all": True})) == ["bob-build"]
    assert len(listing("svt-carol", {"all": True})["data"]["domains"]) == 5
    spoof = {"all": True, "uid": 0, "user": "root", "as_user": "root"}
    assert names(listing("svt-alice", spoof)) == ["alice-db", "alice-web"]
    recs = decisions(env, op="list", user="svt-alice")
    assert len(recs) == 2
    assert all(r["uid"] == test_users["svt-alice"].pw_uid and r["via"] == "svirtd" for r in recs)


def test_allowed_and_denied_are_audited_with_the_peer(env, test_users, readable_src, as_user):
    alice = test_users["svt-alice"]
    ok = call_as(as_user, alice, readable_src, env.socket, "start", {"domain": "alice-db"})
    assert ok["status"] == 0, ok
    no = call_as(as_user, alice, readable_src, env.socket, "destroy", {"domain": "bob-build"})
    assert no["status"] == 3 and no["check"] == "rbac"
    assert "'svt-alice'" in no["message"] and "'bob-build'" in no["message"]
    start, destroy = decisions(env, user="svt-alice")[-2:]
    assert (start["op"], start["vm"], start["verdict"]) == ("start", "alice-db", "allowed")
    assert (destroy["op"], destroy["vm"], destroy["verdict"]) == ("destroy", "bob-build", "denied")
    assert destroy["pid"] > 1 and destroy["uid"] == alice.pw_uid
    outcome = [r for r in env.audit_records() if r.get("ref") == start["seq"]]
    assert outcome and outcome[0]["outcome"] == "ok"
    # and the state lives in the daemon's one connection: bob sees alice-db running? no -
    # but root does
    listing = client.call(env.socket, Request("list", {"all": True})).data["domains"]
    assert {d["name"]: d["state"] for d in listing}["alice-db"] == "running"


def test_as_user_from_non_root_is_denied_and_audited(env, test_users, readable_src, as_user):
    alice = test_users["svt-alice"]
    r = call_as(
        as_user, alice, readable_src, env.socket, "dominfo", {"domain": "bob-build"}, "svt-bob"
    )
    assert r["status"] == 3 and r["check"] == "identity"
    rec = decisions(env, user="svt-alice")[-1]
    assert rec["requested_as"] == "svt-bob" and rec["verdict"] == "denied"
    assert rec["acting_as"] is None


def test_root_may_act_as_another_user(env):
    ok = client.call(env.socket, Request("dominfo", {"domain": "bob-build"}, as_user="svt-bob"))
    assert ok.status == 0
    no = client.call(env.socket, Request("dominfo", {"domain": "alice-web"}, as_user="svt-bob"))
    assert no.status == 3
    rec = decisions(env, user="root")[-1]
    assert rec["acting_as"] == "svt-bob"


def test_admin_status_root_or_daemon_admin(env, test_users, readable_src, as_user):
    st = client.admin_status(env.socket)
    assert st.status == 0
    assert st.data["service"]["policy"]["digest"]
    # the role files, and the configuration file (re-read on reload: see daemon/reconfig.py)
    assert st.data["reload"]["watching"] == [str(env.ua), str(env.pa), str(env.config)]
    assert st.data["reload"]["needs_restart"] == []
    body = f"print(json.dumps(client.admin_status({env.socket!r}).to_dict()))\n"
    alice = json.loads(as_user(test_users["svt-alice"], client_snippet(readable_src, body)).stdout)
    assert alice["status"] == 3 and "daemon-admin" in alice["message"]
    assert decisions(env, user="svt-alice", op="daemon-admin")[-1]["verdict"] == "denied"
    carol = json.loads(as_user(test_users["svt-carol"], client_snippet(readable_src, body)).stdout)
    assert carol["status"] == 0 and carol["data"]["daemon"]["pid"] == env.d.proc.pid
    assert decisions(env, user="svt-carol", op="daemon-admin")[-1]["verdict"] == "allowed"


def test_bad_policy_file_keeps_the_last_good_policy(env, test_users, readable_src, as_user):
    alice = test_users["svt-alice"]

    def alice_sees():
        return names(call_as(as_user, alice, readable_src, env.socket, "list", {"all": True}))

    assert alice_sees() == ["alice-db", "alice-web"]
    before = client.admin_status(env.socket).data["service"]["policy"]["digest"]
    write_root_file(env.ua, UA_XML.replace("</UserConfiguration>", "<User name="))
    last = wait_for(
        lambda: client.admin_status(env.socket).data["reload"]["last"], what="reload attempt"
    )
    assert last["ok"] is False
    assert f"{env.ua}:7: not well-formed XML" in " ".join(last["errors"])
    assert client.admin_status(env.socket).data["service"]["policy"]["digest"] == before
    assert alice_sees() == ["alice-db", "alice-web"]  # old policy in force
    assert "rejected, the previous policy stays in force" in env.d.log()
    # an unsafe (group-writable) file is rejected the same way
    write_root_file(env.ua, UA_XML.replace('<UserRole role="WebTeam"/>', ""), mode=0o664)

    def last_errors():
        return " ".join(client.admin_status(env.socket).data["reload"]["last"]["errors"])

    wait_for(lambda: "group writable" in last_errors(), what="unsafe file rejected")
    assert alice_sees() == ["alice-db", "alice-web"]
    # a good new file takes effect: alice loses her role
    os.chmod(env.ua, 0o644)
    wait_for(lambda: client.admin_status(env.socket).data["reload"]["last"]["ok"], what="reload")
    assert alice_sees() == []


def test_svirsh_goes_through_the_daemon(env, test_users, readable_src, as_user):
    """The lead's svirsh, as a real user, picks the daemon (non-root) and prints like virsh."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(readable_src)!r})\n"
        "from secured_virt.cli.svirsh import main\n"
        "sys.exit(main())\n"
    )
    alice = test_users["svt-alice"]
    res = as_user(alice, [PY, "-I", "-c", code, "--socket", env.socket, "list", "--all"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Id", "Name", "State"]
    assert sorted(line.split()[1] for line in lines[2:] if line.strip()) == [
        "alice-db",
        "alice-web",
    ]
    res = as_user(alice, [PY, "-I", "-c", code, "--socket", env.socket, "destroy", "bob-build"])
    assert res.returncode == 3
    assert "denied" in res.stderr and "bob-build" in res.stderr


def test_socket_mode_decides_who_may_connect(test_users, readable_src, as_user):
    with running_svirtd(socket_mode="0660") as e:
        st = os.stat(e.socket)
        assert oct(st.st_mode & 0o777) == "0o660" and st.st_gid == 0
        r = call_as(as_user, test_users["svt-alice"], readable_src, e.socket, "list")
        assert r["error"] == "unavailable" and "permission denied" in r["message"]
        assert client.call(e.socket, Request("list")).status == 0  # root still may


def test_sigterm_stops_cleanly_and_the_chain_verifies(env):
    for _ in range(5):
        client.call(env.socket, Request("dominfo", {"domain": "alice-web"}, as_user="svt-bob"))
    env.d.send_signal(signal.SIGTERM)
    assert env.d.proc.wait(15) == 0
    assert not os.path.exists(env.socket)
    result = audit.verify(env.audit_log)
    assert result.ok, result
    assert len(decisions(env, user="root")) == 5


def test_config_errors_are_reported_with_file_and_line(tmp_path):
    e = RealEnv()
    try:
        text = e.config.read_text() + "idle_timout = 5\n"
        write_root_file(e.config, text)
        d = e.daemon().start()
        assert d.proc.wait(30) == 4
        d.stop()
        assert f"{e.config}:" in d.log() and "unknown key 'idle_timout'" in d.log()
    finally:
        e.cleanup()
