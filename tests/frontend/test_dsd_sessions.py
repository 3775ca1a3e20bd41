"""Dynamic separation of duty in the product: roles active per login session.

Real rbac, real libvirt test driver, real audit log, real role-session files; the two "login
sessions" are two real processes (this one and its parent) as the session key's ppid.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secured_virt.access.rolesession import ActiveRoles, RoleSessionError
from secured_virt.requests import EXIT_DENIED, EXIT_OK, Request
from secured_virt.service import Service

from .conftest import REPO, ident, write_root_file
from .test_svirsh_cli import conf_file, svirsh

DSD_UA = """<?xml version="1.0"?>
<UserConfiguration>
  <User name="alice"><UserRole role="WebTeam"/></User>
  <User name="svt-carol"><UserRole role="WebTeam"/><UserRole role="BuildTeam"/></User>
  <DynamicSeparation name="web-vs-build">
    <Role name="WebTeam"/><Role name="BuildTeam"/>
  </DynamicSeparation>
</UserConfiguration>
"""

HERE, PARENT = os.getpid(), os.getppid()  # two live processes: two "login sessions"


@pytest.fixture
def dsd_env(svt_env):
    write_root_file(Path(svt_env.ua), DSD_UA)
    return svt_env


@pytest.fixture
def svc(dsd_env):
    return Service.from_config(dsd_env)


def carol(ppid=HERE, uid=5005):
    return ident("svt-carol", uid=uid, ppid=ppid)


def info(svc, who, vm):
    """dominfo: WebTeam grants it on alice-*, BuildTeam on bob-build."""
    return svc.handle(who, Request("dominfo", {"domain": vm}))


def test_a_second_conflicting_role_is_refused_in_the_same_session(svc, dsd_env):
    r = info(svc, carol(), "alice-web")
    assert r.status == EXIT_OK, r.message
    r = info(svc, carol(), "bob-build")  # BuildTeam would join the active WebTeam
    assert r.status == EXIT_DENIED and r.check == "dsd"
    assert "dynamic separation set 'web-vs-build'" in r.message
    assert (
        "Active in this login session: WebTeam (last used 0 min ago); it stays active until 15"
        in r.message
    )
    assert "'svirsh -k'" in r.message
    rec = json.loads(Path(dsd_env.audit_log).read_text().splitlines()[-1])
    assert rec["verdict"] == "denied" and rec["check"] == "dsd" and rec["vm"] == "bob-build"
    # the role already active keeps working
    assert info(svc, carol(), "alice-db").status == EXIT_OK


def test_another_login_session_may_use_the_other_role(svc):
    assert info(svc, carol(HERE), "alice-web").status == EXIT_OK
    r = info(svc, carol(PARENT), "bob-build")
    assert r.status == EXIT_OK, r.message
    assert info(svc, carol(PARENT), "alice-db").check == "dsd"  # and that one is now BuildTeam's


def test_forgetting_ends_the_sessions_roles(svc):
    assert info(svc, carol(), "alice-web").status == EXIT_OK
    assert info(svc, carol(), "bob-build").check == "dsd"
    assert svc.handle(carol(), Request("forget-credentials", {})).status == EXIT_OK  # svirsh -k
    assert info(svc, carol(), "bob-build").status == EXIT_OK


def test_roles_time_out_after_their_last_use(svc, dsd_env):
    svc.gate.role_sessions.timeout = 0.3  # seconds, instead of role_session_minutes
    assert info(svc, carol(), "alice-web").status == EXIT_OK
    assert info(svc, carol(), "bob-build").check == "dsd"
    time.sleep(0.4)
    assert info(svc, carol(), "bob-build").status == EXIT_OK


def test_users_who_cannot_break_a_set_are_not_tracked(svc, dsd_env):
    assert info(svc, ident("alice", ppid=HERE), "alice-web").status == EXIT_OK
    assert info(svc, ident("alice"), "alice-db").status == EXIT_OK  # no session key: fine
    assert not os.path.exists(dsd_env.auth_dir)  # not even the store's directory was made


def test_an_unidentifiable_session_fails_closed_for_tracked_users(svc):
    r = info(svc, ident("svt-carol", uid=5005), "alice-web")  # no tty, no parent process
    assert r.status == EXIT_DENIED and r.check == "dsd"
    assert "login session of this request cannot be identified" in r.message


def test_an_unsafe_store_fails_closed(svc, dsd_env):
    os.makedirs(dsd_env.auth_dir, mode=0o700, exist_ok=True)
    os.chmod(dsd_env.auth_dir, 0o777)
    r = info(svc, carol(), "alice-web")
    assert r.status == EXIT_DENIED and r.check == "dsd"
    assert "cannot be enforced" in r.message and "role session store not used" in r.message


def test_the_store_file_is_private_and_per_user(svc, dsd_env):
    assert info(svc, carol(), "alice-web").status == EXIT_OK
    path = Path(dsd_env.auth_dir) / "roles-5005"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    doc = json.loads(path.read_text())
    (rec,) = doc["records"]
    assert rec["user"] == "svt-carol" and set(rec["roles"]) == {"WebTeam"}
    store = ActiveRoles(dsd_env.auth_dir)
    assert set(store.active(carol(), "svt-carol")) == {"WebTeam"}
    assert store.active(carol(), "someone-else") == {}
    assert store.active(carol(PARENT), "svt-carol") == {}
    with pytest.raises(RoleSessionError, match="cannot be identified"):
        store.active(ident("svt-carol", uid=5005), "svt-carol")


def test_svirsh_processes_of_one_script_share_a_session(dsd_env, tmp_path, test_users):
    """Real svirsh runs (root acting --as svt-carol): consecutive commands from one parent process
    are one login session; -k ends it."""
    conf = str(conf_file(dsd_env, tmp_path))
    r = svirsh("--config", conf, "--as", "svt-carol", "dominfo", "bob-build")
    assert r.returncode == 0, r.stderr
    r = svirsh("--config", conf, "--as", "svt-carol", "dominfo", "alice-web")
    assert r.returncode == 3 and "dynamic separation set 'web-vs-build'" in r.stderr, r.stderr
    # a different parent process is a different session
    sh = subprocess.run(
        ["/bin/sh", "-c", f'"$0" -I {REPO}/bin/svirsh --config {conf} --as svt-carol '
         'dominfo alice-web; exit $?', sys.executable],
        capture_output=True, text=True, env={"PATH": "/usr/bin"}, timeout=60,
    )  # fmt: skip
    assert sh.returncode == 0, sh.stderr
    assert svirsh("--config", conf, "-k").returncode == 0
    r = svirsh("--config", conf, "--as", "svt-carol", "dominfo", "alice-web")
    assert r.returncode == 0, r.stderr


def test_a_concurrent_activation_is_caught_under_the_lock(svc):
    """Two requests of one session check DSD at the same time, for conflicting roles: the one
    that records its role second is refused.  The ACM hook runs between the check and the
    recording, so it stands in for the other request landing in between."""
    from secured_virt.access.gate import Target
    from secured_virt.access.operations import CATALOGUE

    gate, who = svc.gate, carol()

    def other_request_lands():
        gate.role_sessions.activate(who, "svt-carol", "WebTeam")
        return True, ""

    v = gate.authorize(
        who, CATALOGUE.get("dominfo"), Target("bob-build"), None, other_request_lands
    )
    assert not v.allowed and v.check == "dsd"
    assert "meanwhile another request of this login session activated WebTeam" in v.rule
    assert set(gate.role_sessions.active(who, "svt-carol")) == {"WebTeam"}  # BuildTeam never was


def test_concurrent_requests_never_leave_conflicting_roles_active(svc):
    import threading

    from secured_virt.access.gate import Target
    from secured_virt.access.operations import CATALOGUE

    gate, who, op = svc.gate, carol(), CATALOGUE.get("dominfo")
    results = []
    for _ in range(20):
        gate.role_sessions.forget(who.uid)
        barrier = threading.Barrier(2)

        def ask(vm, barrier=barrier):
            barrier.wait()
            results.append((vm, gate.authorize(who, op, Target(vm)).allowed))

        ts = [threading.Thread(target=ask, args=(vm,)) for vm in ("alice-web", "bob-build")]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(gate.role_sessions.active(who, "svt-carol")) == 1
        assert [ok for _vm, ok in results[-2:]].count(True) == 1
