"""Scriptable edits end to end: assign, deassign, grant, revoke, add-role, rm-role.

Each runs the real svirt-admin on real root-owned files; after an install the result is loaded
with rbac.load (the same trusted-file path svirtd uses) to check the *meaning*, and the text
is checked for the layout root wrote (comments stay).
"""

from __future__ import annotations

import json
import os

import pytest
from admin_helpers import mode_of, write_root_file

import rbac
from secured_virt.access.operations import CATALOGUE

START = CATALOGUE.get("start").id
DESTROY = CATALOGUE.get("destroy").id


def policy(env):
    return rbac.load(env.ua, env.pa, CATALOGUE.names)


def untouched(env, before):
    assert (env.ua.read_bytes(), env.pa.read_bytes()) == before
    assert not env.backup("ua").exists()
    assert not env.backup("pa").exists()


def snapshot(env):
    return env.ua.read_bytes(), env.pa.read_bytes()


# -- assign / deassign ---------------------------------------------------------------------------
def test_assign_installs_and_keeps_comments(admin_env):
    old_ua = admin_env.ua.read_bytes()
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 0, r.stderr
    assert "assigned role Auditor to alice" in r.stdout
    assert "alice gains list, dominfo, domstate on vm bob-build" in r.stdout
    text = admin_env.ua.read_text()
    assert text.startswith('<?xml version="1.0" ?>\n<!-- The demo\'s user assignment')
    assert (
        '  <User name="alice">\n    <UserRole role="WebTeam"/>\n'
        '    <UserRole role="Auditor"/>\n  </User>\n'
    ) in text
    assert mode_of(admin_env.ua) == (0, 0, 0o644)
    assert admin_env.backup("ua").read_bytes() == old_ua
    assert policy(admin_env).decide("alice", 3, "bob-build").allowed


def test_assign_new_user_with_expiry(admin_env):
    r = admin_env.run("assign", "dave", "BuildTeam", "--expires", "2099-12-31", "--yes")
    assert r.returncode == 0, r.stderr
    assert "dave is added to the UA policy with role BuildTeam (until 2099-12-31)" in r.stdout
    assert '<User name="dave">\n    <UserRole role="BuildTeam" expires="2099-12-31"/>' in (
        admin_env.ua.read_text()
    )
    assert policy(admin_env).decide("dave", START, "bob-build").allowed


def test_assign_changes_only_the_expiry(admin_env):
    assert (
        admin_env.run("assign", "bob", "BuildTeam", "--expires", "2099-01-01", "-y").returncode == 0
    )
    r = admin_env.run("assign", "bob", "BuildTeam", "--dry-run")
    assert r.returncode == 0
    assert "bob: role BuildTeam no longer expires (was until 2099-01-01)" in r.stdout
    assert "gains" not in r.stdout and "loses" not in r.stdout


def test_assign_already_held_is_no_change(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("assign", "alice", "WebTeam", "--yes")
    assert r.returncode == 0
    assert "no changes: alice already holds role WebTeam" in r.stdout
    untouched(admin_env, before)


def test_assign_unknown_role_is_refused(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("assign", "alice", "WebTaem", "--yes")
    assert r.returncode == 1
    assert "would not be a valid policy" in r.stderr
    assert "did you mean 'WebTeam'" in r.stderr
    untouched(admin_env, before)


def test_assign_breaking_separation_of_duty_is_refused(admin_env):
    ua = admin_env.ua.read_text().replace(
        "</UserConfiguration>",
        '  <StaticSeparation name="builders-are-not-web">\n'
        '    <Role name="WebTeam"/>\n    <Role name="BuildTeam"/>\n'
        "  </StaticSeparation>\n</UserConfiguration>",
    )
    write_root_file(admin_env.ua, ua)
    before = snapshot(admin_env)
    r = admin_env.run("assign", "alice", "BuildTeam", "--yes")
    assert r.returncode == 1
    assert "static separation set 'builders-are-not-web'" in r.stderr
    untouched(admin_env, before)


def test_assign_bad_expiry_is_refused(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("assign", "alice", "Auditor", "--expires", "next tuesday", "--yes")
    assert r.returncode == 1
    assert "next tuesday" in r.stderr
    untouched(admin_env, before)


def test_deassign(admin_env):
    r = admin_env.run("deassign", "bob", "BuildTeam", "--yes")
    assert r.returncode == 0, r.stderr
    assert "bob is removed from the UA policy (held role BuildTeam)" in r.stdout
    assert "bob loses list, dominfo, domstate, start, shutdown, destroy on vm bob-build" in r.stdout
    assert "bob" not in admin_env.ua.read_text()
    assert "bob" not in policy(admin_env).users


def test_deassign_not_held_is_refused(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("deassign", "alice", "Auditor", "--yes")
    assert r.returncode == 1
    assert "user 'alice' does not hold role 'Auditor'" in r.stderr
    assert "assigned roles: WebTeam" in r.stderr
    untouched(admin_env, before)


# -- grant / revoke ------------------------------------------------------------------------------
def test_grant_by_name_on_a_pattern(admin_env):
    r = admin_env.run("grant", "WebTeam", "start", "pattern:web-*", "--yes")
    assert r.returncode == 0, r.stderr
    assert "alice gains start on pattern web-*" in r.stdout
    text = admin_env.pa.read_text()
    assert (
        '    <ManageVM type="pattern">\n      <VM pattern="web-*"/>\n    </ManageVM>\n'
        '    <ControlOperation>\n      <Accept>\n        <operation name="start"/>\n'
        '      </Accept>\n    </ControlOperation>\n  </Role>\n  <Role name="BuildTeam">'
    ) in text
    assert "<!-- destroy -->" in text  # root's comments survive
    pol = policy(admin_env)
    assert pol.decide("alice", START, "web-7").allowed
    assert not pol.decide("bob", START, "web-7").allowed


def test_grant_by_id_joins_the_grant_of_the_same_scope(admin_env):
    r = admin_env.run("grant", "BuildTeam", "12", "vm:bob-build", "--yes")
    assert r.returncode == 0, r.stderr
    assert "bob gains reset on vm bob-build" in r.stdout
    text = admin_env.pa.read_text()
    assert '        <operation id="13"/>\n        <operation id="12"/>\n      </Accept>' in text
    assert text.count('<Role name="BuildTeam">') == 1
    assert text.count("<ManageVM") == admin_env.backup("pa").read_text().count("<ManageVM")


def test_grant_label_all_owned_and_host_scopes(admin_env):
    for scope in ("label:blue", "all", "owned", "host"):
        r = admin_env.run("grant", "Auditor", "dumpxml", scope, "--yes")
        assert r.returncode == 0, (scope, r.stderr)
    pol = policy(admin_env)
    dump = CATALOGUE.get("dumpxml").id
    assert pol.decide("carol", dump, "x", {"label": "blue"}).allowed
    assert pol.decide("carol", dump, "anything").allowed
    text = admin_env.pa.read_text()
    assert '<ManageVM type="label">\n      <Label name="blue"/>' in text
    assert '<ManageVM type="owned"/>' in text
    assert '<VM name="Domain-0"/>' in text.split('<Role name="Auditor">')[1]


def test_grant_already_granted_is_no_change(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("grant", "WebTeam", "destroy", "vm:alice-web", "--yes")
    assert r.returncode == 0
    assert "no changes: role WebTeam already has destroy on vm alice-web" in r.stdout
    untouched(admin_env, before)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["WebTeam", "strat", "all"], 1, "did you mean 'start'"),
        (["WebTeam", "99", "all"], 1, "unknown operation '99'"),
        (["NoTeam", "start", "all"], 1, "role 'NoTeam' is not defined"),
        (["WebTeam", "start", "vm:"], 2, "bad VM scope"),
        (["WebTeam", "start", "host:x"], 2, "bad VM scope"),
    ],
)
def test_grant_refusals_leave_files_untouched(admin_env, args, code, message):
    before = snapshot(admin_env)
    r = admin_env.run("grant", *args, "--yes")
    assert r.returncode == code, r.stderr
    assert message in r.stderr
    untouched(admin_env, before)


def test_revoke_from_a_grant_of_two_vms_splits_it(admin_env):
    r = admin_env.run("revoke", "WebTeam", "start", "vm:alice-web", "--yes")
    assert r.returncode == 0, r.stderr
    assert "alice loses start on vm alice-web" in r.stdout
    assert "alice-db" not in r.stdout.split("Impact on users:")[1].split("Impact on roles")[0]
    pol = policy(admin_env)
    assert not pol.decide("alice", START, "alice-web").allowed
    assert pol.decide("alice", START, "alice-db").allowed
    assert pol.decide("alice", DESTROY, "alice-web").allowed
    text = admin_env.pa.read_text()
    assert "<!-- start -->" not in text  # the comment on the removed line went with it
    assert "<!-- resume -->" in text


def test_revoke_what_comes_from_elsewhere_explains(admin_env):
    assert admin_env.run("grant", "WebTeam", "reboot", "pattern:alice-*", "-y").returncode == 0
    before = snapshot(admin_env)
    r = admin_env.run("revoke", "WebTeam", "reboot", "vm:alice-web", "--yes")
    assert r.returncode == 1
    assert "role WebTeam has no grant of reboot on vm alice-web" in r.stderr
    assert "reboot comes to role WebTeam from: pattern:alice-*" in r.stderr
    assert (admin_env.ua.read_bytes(), admin_env.pa.read_bytes()) == before


def test_revoke_star_removes_the_scope(admin_env):
    r = admin_env.run("revoke", "Auditor", "*", "vm:carol-lab", "--yes")
    assert r.returncode == 0, r.stderr
    assert "carol loses list, dominfo, domstate on vm carol-lab" in r.stdout
    assert "carol-lab" not in admin_env.pa.read_text()


def test_revoke_one_operation_from_a_wildcard_grant(admin_env):
    assert admin_env.run("add-role", "Ops", "-y").returncode == 0
    assert admin_env.run("grant", "Ops", "*", "pattern:ops-*", "-y").returncode == 0
    assert admin_env.run("assign", "dave", "Ops", "-y").returncode == 0
    r = admin_env.run("revoke", "Ops", "destroy", "pattern:ops-*", "--yes")
    assert r.returncode == 0, r.stderr
    assert "dave loses destroy on pattern ops-*" in r.stdout
    pol = policy(admin_env)
    assert not pol.decide("dave", DESTROY, "ops-1").allowed
    assert pol.decide("dave", START, "ops-1").allowed
    assert 'id="*"' not in admin_env.pa.read_text()


# -- roles ---------------------------------------------------------------------------------------
def test_add_role_with_inheritance_and_authentication(admin_env):
    r = admin_env.run("add-role", "WebAdmin", "--inherits", "WebTeam", "--authenticate", "--yes")
    assert r.returncode == 0, r.stderr
    assert "role WebAdmin is new (inherits WebTeam; requires authentication)" in r.stdout
    assert (
        '<Role name="WebAdmin" authenticate="true">\n    <Inherits role="WebTeam"/>\n  </Role>'
        in (admin_env.pa.read_text())
    )
    r = admin_env.run("grant", "WebAdmin", "undefine", "vm:alice-web", "--yes")
    assert r.returncode == 0
    r = admin_env.run("assign", "bob", "WebAdmin", "--yes")
    assert "bob gains undefine on vm alice-web (with authentication)" in r.stdout
    d = policy(admin_env).decide("bob", CATALOGUE.get("undefine").id, "alice-web")
    assert d.allowed and d.requires_auth


def test_add_role_refusals(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("add-role", "WebTeam", "--yes")
    assert r.returncode == 1 and "already defined" in r.stderr
    r = admin_env.run("add-role", "X", "--inherits", "Nobody", "--yes")
    assert r.returncode == 1 and "role 'X' inherits undefined role 'Nobody'" in r.stderr
    untouched(admin_env, before)


def test_rm_role_refused_while_held(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("rm-role", "BuildTeam", "--yes")
    assert r.returncode == 1
    assert "role 'BuildTeam' is still assigned to bob" in r.stderr
    assert "--force" in r.stderr
    untouched(admin_env, before)


def test_rm_role_force_removes_assignments_in_both_files(admin_env):
    old_ua, old_pa = snapshot(admin_env)
    r = admin_env.run("rm-role", "BuildTeam", "--force", "--yes")
    assert r.returncode == 0, r.stderr
    assert "bob is removed from the UA policy (held role BuildTeam)" in r.stdout
    assert "role BuildTeam is removed" in r.stdout
    assert "BuildTeam" not in admin_env.ua.read_text()
    assert "BuildTeam" not in admin_env.pa.read_text()
    assert admin_env.backup("ua").read_bytes() == old_ua
    assert admin_env.backup("pa").read_bytes() == old_pa
    assert mode_of(admin_env.pa) == (0, 0, 0o644)
    # the UA went first, so the state in between was a valid policy
    assert r.stdout.index(f"installed {admin_env.ua}") < r.stdout.index(f"installed {admin_env.pa}")
    pol = policy(admin_env)
    assert "BuildTeam" not in pol.roles and "bob" not in pol.users


def test_rm_unused_role(admin_env):
    assert admin_env.run("add-role", "Spare", "-y").returncode == 0
    r = admin_env.run("rm-role", "Spare", "--yes")
    assert r.returncode == 0, r.stderr
    assert "role Spare is removed" in r.stdout
    assert "Spare" not in admin_env.pa.read_text()


# -- modes: dry run, prompt, json ------------------------------------------------------------------
def test_dry_run_shows_impact_and_installs_nothing(admin_env):
    before = snapshot(admin_env)
    r = admin_env.run("grant", "Auditor", "destroy", "all", "--dry-run")
    assert r.returncode == 0
    assert "carol gains destroy on all VMs" in r.stdout
    assert "dry run: nothing was installed" in r.stdout
    untouched(admin_env, before)
    assert admin_env.audit_records() == []


def test_json_dry_run(admin_env):
    r = admin_env.run("grant", "WebTeam", "6", "pattern:web-*", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["changes"] == ["granted start on pattern web-* to role WebTeam"]
    (alice,) = [u for u in doc["impact"]["users"] if u["user"] == "alice"]
    assert alice["gains"] == [
        {
            "operations": [{"id": 6, "name": "start", "requires_auth": False}],
            "scope": {"type": "pattern", "text": "pattern web-*", "spec": "pattern:web-*",
                      "value": "web-*"},
        }
    ]  # fmt: skip


def test_json_needs_yes_or_dry_run(admin_env):
    r = admin_env.run("grant", "WebTeam", "6", "all", "--json")
    assert r.returncode == 2


@pytest.mark.parametrize(("answer", "installed"), [("y\n", True), ("yes\n", True), ("n\n", False),
                                                   ("\n", False), ("", False)])  # fmt: skip
def test_prompt(admin_env, answer, installed):
    before = snapshot(admin_env)
    r = admin_env.run("assign", "carol", "BuildTeam", input=answer)
    assert "Install? [y/N]" in r.stdout
    assert (r.returncode == 0) is installed
    assert (snapshot(admin_env) != before) is installed


# -- refusing to work on what cannot be trusted ----------------------------------------------------
def test_untrusted_policy_file_is_not_edited(admin_env):
    os.chmod(admin_env.ua, 0o664)
    before = snapshot(admin_env)
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 4
    assert "group writable" in r.stderr
    assert snapshot(admin_env) == before


def test_unsafe_config_is_refused(admin_env):
    os.chmod(admin_env.config, 0o666)
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 4
    assert "world writable" in r.stderr


def test_broken_installed_policy_can_still_be_repaired(admin_env):
    """A UA that no longer loads (role removed by hand) is fixed by a scripted edit."""
    write_root_file(admin_env.pa, admin_env.pa.read_text().replace('"Auditor"', '"Auditors"'))
    r = admin_env.run("deassign", "carol", "Auditor", "--yes")
    assert r.returncode == 0, r.stderr
    assert "the current policy does not load" in r.stdout
    policy(admin_env)  # loads again


def test_non_root_cannot_change_the_policy(admin_env, test_users, readable_src, as_user):
    snippet = (
        f"import sys; sys.path.insert(0, {str(readable_src)!r}); "
        "from secured_virt.cli.admin import main; sys.exit(main(sys.argv[1:]))"
    )
    from admin_helpers import PY

    r = as_user(test_users["svt-bob"], [PY, "-I", "-c", snippet, "assign", "bob", "Auditor", "-y"])
    assert r.returncode == 1, r.stderr
    assert "only root can change the policy files" in r.stderr


def test_every_install_is_audited_and_the_chain_verifies(admin_env):
    admin_env.run("assign", "alice", "Auditor", "-y")
    admin_env.run("grant", "Auditor", "start", "vm:carol-lab", "-y")
    recs = admin_env.audit_records()
    decisions = [r for r in recs if r["type"] == "decision"]
    assert [d["rule"].split(":")[0] for d in decisions] == [
        "svirt-admin assign",
        "svirt-admin grant",
    ]
    assert all(d["op"] == "rbac-admin" and d["verdict"] == "allowed" for d in decisions)
    r = admin_env.run("audit", "verify", "--log", str(admin_env.audit_log))
    assert r.returncode == 0 and r.stdout.startswith("OK")
