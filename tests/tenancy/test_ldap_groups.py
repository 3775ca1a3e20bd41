"""Group roles with a real LDAP directory: Debian's slapd and nslcd, NSS through libnss-ldapd.

UA gives a role to ``<Group name="ldapops">``, a posixGroup that exists only in the directory;
its member ``ldbob`` is a posixAccount that exists only in the directory (not in /etc/passwd).
Everything under test runs in the private mount namespace of
:class:`secured_virt.testing.ldapdir.LdapDirectory`, whose nsswitch.conf says ``files ldap``;
the host's own /etc/nsswitch.conf is never changed (checked).  Through the product's real
paths: ``svirt-admin check --explain`` names the directory group; a real svirtd serves a client
running as the directory uid (setpriv, no supplementary groups: membership comes from NSS); an
``ldapmodify`` of the group is seen by the running svirtd after the resolver's cache expires,
without a restart; a group the directory does not have, and the directory itself gone, grant
nothing.
"""

from __future__ import annotations

import hashlib
import json
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secured_virt.testing.ldapdir import LdapDirectory, unavailable_reason, unused_ids

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(HERE.parent / "daemon")]

from svtd_helpers import SVIRTD_ARGV, Daemon, RealEnv, write_root_file  # noqa: E402

PY = sys.executable
pytestmark = pytest.mark.integration

GROUP = "ldapops"
BOB, CAROL = "ldbob", "ldcarol"  # directory users; ldcarol is in no group at first

PA = """<RolePolicyDefinition>
  <Role name="WebTeam">
    <ManageVM type="individual"><VM name="alice-web"/></ManageVM>
    <ControlOperation><Accept>
      <operation name="list"/><operation name="dominfo"/><operation name="start"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


def ua(*groups: str) -> str:
    body = "".join(f'<Group name="{g}"><UserRole role="WebTeam"/></Group>' for g in groups)
    return f"<UserConfiguration>{body}</UserConfiguration>"


def _nsswitch_digest() -> str:
    return hashlib.sha256(Path("/etc/nsswitch.conf").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ldap():
    """The directory: ldbob (member of ldapops) and ldcarol, ids unused on this host."""
    why = unavailable_reason()
    if why:
        pytest.skip(why)
    for name in (BOB, CAROL, GROUP):
        with pytest.raises(KeyError):  # the point: they exist only in the directory
            pwd.getpwnam(name)
    before = _nsswitch_digest()
    bob_id, carol_id, gid = unused_ids(3)
    with LdapDirectory() as d:
        d.add_user(BOB, bob_id, bob_id)
        d.add_user(CAROL, carol_id, carol_id)
        d.add_group(GROUP, gid, [BOB])
        d.ids = {BOB: (bob_id, bob_id), CAROL: (carol_id, carol_id), GROUP: gid}
        yield d
    assert _nsswitch_digest() == before, "the host's /etc/nsswitch.conf changed"


@pytest.fixture(scope="module")
def env(ldap):
    """A private host (the demo node, UA/PA above) and a real svirtd in the namespace."""
    e = RealEnv()
    try:
        write_root_file(e.ua, ua(GROUP, "ldapghost"))
        write_root_file(e.pa, PA)
        argv = [*SVIRTD_ARGV, "--config", str(e.config), "--log-level", "debug"]
        e.d = Daemon(ldap.argv(argv), e.base, Path(e.socket)).start().wait_ready()
        yield e
    finally:
        if getattr(e, "d", None) is not None:
            e.d.stop()
        e.cleanup()


def admin(ldap, env, *args: str) -> subprocess.CompletedProcess:
    """svirt-admin of this tree, as root, in the namespace."""
    argv = [PY, "-m", "secured_virt.cli.admin", "--config", str(env.config), *args]
    return ldap.run(argv, env={"PYTHONPATH": str(REPO)})


def svirsh(ldap, user: str, readable_src, socket: str, *args: str):
    """The svirsh of this tree as the directory uid of ``user`` (no supplementary groups)."""
    code = (
        f"import sys; sys.path.insert(0, {str(readable_src)!r}); "
        "from secured_virt.cli.svirsh import main; sys.exit(main(sys.argv[1:]))"
    )
    return ldap.run([PY, "-I", "-c", code, "--socket", socket, *args], user=ldap.ids[user])


def listed(res) -> list[str]:
    assert res.returncode == 0, res.stdout + res.stderr
    return sorted(line.split()[1] for line in res.stdout.splitlines()[2:] if line.strip())


# -- the directory and the namespace ------------------------------------------------------------
def test_the_directory_is_seen_through_nss_only_inside_the_namespace(ldap):
    bob_uid = ldap.ids[BOB][0]
    r = ldap.run(["/usr/bin/id", BOB])
    assert r.returncode == 0, r.stderr
    assert f"uid={bob_uid}({BOB})" in r.stdout and f"({GROUP})" in r.stdout
    r = ldap.run(["/usr/bin/id", "-un"], user=ldap.ids[BOB])  # the uid's own name, too
    assert r.stdout.strip() == BOB, r.stderr
    # the host resolves none of it
    with pytest.raises(KeyError):
        pwd.getpwuid(bob_uid)
    host = subprocess.run(["/usr/bin/getent", "group", GROUP], capture_output=True, text=True)
    assert host.returncode == 2 and host.stdout == ""  # 2: no such key


# -- svirt-admin check --explain ----------------------------------------------------------------
def test_check_explain_names_the_directory_group(ldap, env):
    r = admin(ldap, env, "check", BOB, "start", "alice-web", "--explain")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"ALLOWED: {BOB} start"), r.stdout
    assert f"WebTeam through group '{GROUP}'" in r.stdout
    assert f"'{BOB}' is a member of '{GROUP}'" in r.stdout
    # ldcarol is a directory user too, but in no group that has roles
    r = admin(ldap, env, "check", CAROL, "start", "alice-web", "--explain")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "is a member of none of the groups it gives roles to" in r.stdout
    # the same question outside the namespace: the host's NSS knows no such group
    r = subprocess.run(
        [PY, "-m", "secured_virt.cli.admin", "--config", str(env.config), "check", BOB, "start",
         "alice-web", "--explain"],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"group '{GROUP}' of the UA policy cannot be resolved through NSS" in r.stdout


def test_a_group_the_directory_does_not_have_grants_nothing_and_explain_says_why(ldap, env):
    write_root_file(Path(env.base) / "etc" / "ghost-ua.xml", ua("ldapghost"))
    r = admin(
        ldap, env, "check", BOB, "start", "alice-web", "--explain",
        "--ua", str(Path(env.base) / "etc" / "ghost-ua.xml"), "--pa", str(env.pa),
    )  # fmt: skip
    assert r.returncode == 3, r.stdout + r.stderr
    assert (
        "group 'ldapghost' of the UA policy cannot be resolved through NSS "
        "(no such group in /etc/group or any NSS source): its roles grant nothing"
    ) in r.stdout


# -- a real svirtd serving the directory uid ------------------------------------------------------
def test_svirtd_serves_a_directory_uid_through_its_group(ldap, env, readable_src):
    bob = svirsh(ldap, BOB, readable_src, env.socket, "list", "--all")
    assert listed(bob) == ["alice-web"]
    r = svirsh(ldap, BOB, readable_src, env.socket, "dominfo", "alice-web")
    assert r.returncode == 0, r.stderr
    r = svirsh(ldap, BOB, readable_src, env.socket, "dominfo", "alice-db")
    assert r.returncode == 3 and "denied" in r.stderr, r.stdout + r.stderr
    assert listed(svirsh(ldap, CAROL, readable_src, env.socket, "list", "--all")) == []
    recs = [
        r
        for r in env.audit_records()
        if r.get("type") == "decision" and r.get("uid") == ldap.ids[BOB][0]
    ]
    assert recs and {r.get("user") for r in recs} == {BOB}, json.dumps(recs[-1:])
    # svirtd named the directory uid through NSS and audited it as the directory user
    allowed = [r for r in recs if r["verdict"] == "allowed" and r.get("vm") == "alice-web"]
    assert allowed
    # and the record says which directory group the role came through
    assert all(f"(role held through group '{GROUP}')" in r["rule"] for r in allowed), allowed


def test_a_directory_membership_change_reaches_the_running_svirtd(ldap, env, readable_src):
    pid = env.d.proc.pid

    def carol_sees() -> list[str]:
        return listed(svirsh(ldap, CAROL, readable_src, env.socket, "list", "--all"))

    assert carol_sees() == []
    ldap.add_member(GROUP, CAROL)
    try:
        deadline = time.monotonic() + 20  # the resolver's cache is 5 s; no reload, no restart
        while carol_sees() != ["alice-web"]:
            assert time.monotonic() < deadline, "the directory's new member was never seen"
            time.sleep(0.5)
    finally:
        ldap.remove_member(GROUP, CAROL, missing_ok=True)
    deadline = time.monotonic() + 20
    while carol_sees() != []:
        assert time.monotonic() < deadline, "the directory's removed member was never dropped"
        time.sleep(0.5)
    assert env.d.proc.pid == pid and env.d.proc.poll() is None  # the same svirtd throughout


RESOLVER_STEPS = """
import sys
import rbac
from rbac.groups import GroupResolver
ua, pa, user = sys.argv[1:4]
clock = [1000.0]
res = GroupResolver(ttl=5, clock=lambda: clock[0])
pol = rbac.loads(open(ua, "rb").read(), open(pa, "rb").read(), {6: "start"}, groups=res)
def step(advance):
    clock[0] += advance
    print(pol.decide(user, 6, "alice-web").allowed, flush=True)
step(0)
sys.stdin.readline()  # the test changed the directory
step(1)  # within the cache's 5 s: the old answer
step(5)  # expired: NSS (nslcd, slapd) is asked again
"""


def test_the_resolver_cache_holds_the_old_answer_until_it_expires(ldap, tmp_path):
    """rbac.groups' cache against the directory, on a clock the test moves: deterministic."""
    ua_path, pa_path = tmp_path / "ua.xml", tmp_path / "pa.xml"
    ua_path.write_text(ua(GROUP))
    pa_path.write_text(
        '<RolePolicyDefinition><Role name="WebTeam"><ManageVM type="all"/>'
        '<ControlOperation><Accept><operation id="6"/></Accept></ControlOperation>'
        "</Role></RolePolicyDefinition>"
    )
    proc = ldap.popen(
        [PY, "-c", RESOLVER_STEPS, str(ua_path), str(pa_path), CAROL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)},
    )
    try:
        first = proc.stdout.readline().strip()
        ldap.add_member(GROUP, CAROL)
        out, err = proc.communicate("changed\n", timeout=60)
        assert [first, *out.split()] == ["False", "False", "True"], err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ldap.remove_member(GROUP, CAROL, missing_ok=True)


# -- the directory gone: nothing resolves, nothing is granted -------------------------------------
def test_with_the_directory_down_the_group_grants_nothing(ldap, env):
    """Fail closed: slapd stopped, nslcd cannot answer; the group and the user are unknown."""
    ldap.slapd.terminate()
    ldap.slapd.wait(30)
    try:
        r = admin(ldap, env, "check", BOB, "start", "alice-web", "--explain")
        assert r.returncode == 3, r.stdout + r.stderr
        assert f"group '{GROUP}' of the UA policy cannot be resolved through NSS" in r.stdout
        assert "grant nothing" in r.stdout
    finally:
        ldap.restart_slapd()
