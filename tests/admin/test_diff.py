"""svirt-admin diff: the impact report between two UA/PA pairs, as text and JSON."""

from __future__ import annotations

import json

from admin_helpers import write_root_file


def new_pair(env):
    """A candidate pair: alice loses destroy, carol becomes a builder, a role Ops appears."""
    ua = env.ua.read_text().replace(
        '    <UserRole role="Auditor"/>\n', '    <UserRole role="Auditor"/>\n'
        '    <UserRole role="BuildTeam"/>\n', 1
    )  # fmt: skip
    pa = env.pa.read_text().replace('        <operation id="13"/>  <!-- destroy -->\n', "", 1)
    pa = pa.replace(
        "</RolePolicyDefinition>",
        '  <Role name="Ops" authenticate="true"/>\n</RolePolicyDefinition>',
    )
    return (
        write_root_file(env.base / "ua.new.xml", ua),
        write_root_file(env.base / "pa.new.xml", pa),
    )


def test_four_files_text(admin_env):
    ua2, pa2 = new_pair(admin_env)
    r = admin_env.run("diff", str(admin_env.ua), str(admin_env.pa), str(ua2), str(pa2))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith(f"--- {admin_env.ua} + {admin_env.pa}\n+++ {ua2} + {pa2}\n")
    assert "alice loses destroy on vm alice-db, vm alice-web" in out
    assert "carol is assigned role BuildTeam" in out
    assert "carol gains start, shutdown, destroy on vm bob-build" in out
    assert "role Ops is new (requires authentication)" in out
    assert "\n  bob " not in out  # nothing changes for bob


def test_json(admin_env):
    ua2, pa2 = new_pair(admin_env)
    r = admin_env.run("diff", "--json", str(admin_env.ua), str(admin_env.pa), str(ua2), str(pa2))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["changed"] is True
    assert doc["new"] == {"ua": str(ua2), "pa": str(pa2)}
    users = {u["user"]: u for u in doc["users"]}
    assert set(users) == {"alice", "carol"}
    lost = users["alice"]["loses"]
    assert [row["scope"]["spec"] for row in lost] == ["vm:alice-db", "vm:alice-web"]
    assert all(row["operations"] == [{"id": 13, "name": "destroy"}] for row in lost)
    assert users["carol"]["assigned"] == ["BuildTeam"]
    roles = {r["role"]: r for r in doc["roles"]}
    assert roles["Ops"]["added"] and roles["Ops"]["authenticate"] == {
        "before": None,
        "after": True,
    }


def test_one_side_against_the_configured_files(admin_env):
    _ua2, pa2 = new_pair(admin_env)
    r = admin_env.run("diff", "--pa", str(admin_env.pa), str(pa2))
    assert r.returncode == 0, r.stderr
    assert f"--- {admin_env.ua} + {admin_env.pa}" in r.stdout
    assert "alice loses destroy" in r.stdout
    assert "carol is assigned" not in r.stdout  # the UA is the configured one on both sides


def test_identical_pairs(admin_env):
    r = admin_env.run("diff", "--ua", str(admin_env.ua), str(admin_env.ua))
    assert r.returncode == 0
    assert "no user, role or separation set changes effectively" in r.stdout


def test_reordering_changes_nothing(admin_env):
    """A file with its users in another order and without comments has no impact."""
    ua = admin_env.ua.read_text()
    users = ua.split("<User ")
    reordered = (
        "<UserConfiguration>\n<User " + "<User ".join(reversed([u.split("</User>")[0] + "</User>\n"
                                                              for u in users[1:]]))
        + "</UserConfiguration>\n"
    )  # fmt: skip
    ua2 = write_root_file(admin_env.base / "ua.sorted.xml", reordered)
    r = admin_env.run("diff", "--ua", str(admin_env.ua), str(ua2))
    assert r.returncode == 0, r.stderr
    assert "no user, role or separation set changes effectively" in r.stdout


def test_invalid_new_pair_is_an_error(admin_env):
    bad = write_root_file(admin_env.base / "pa.bad.xml", "<RolePolicyDefinition>\n")
    r = admin_env.run("diff", "--pa", str(admin_env.pa), str(bad))
    assert r.returncode == 1
    assert "the new policy is not valid" in r.stderr and "pa.bad.xml" in r.stderr


def test_invalid_old_pair_compares_with_nothing(admin_env):
    bad = write_root_file(admin_env.base / "pa.bad.xml", "<RolePolicyDefinition/>\n")
    r = admin_env.run("diff", "--pa", str(bad), str(admin_env.pa))
    assert r.returncode == 0, r.stderr
    assert "the current policy does not load" in r.stdout
    assert "alice gains" in r.stdout


def test_untrusted_input_file(admin_env):
    ua2, _ = new_pair(admin_env)
    ua2.chmod(0o666)
    r = admin_env.run("diff", "--ua", str(admin_env.ua), str(ua2))
    assert r.returncode == 4
    assert "world writable" in r.stderr


def test_usage(admin_env):
    assert admin_env.run("diff").returncode == 2
    assert admin_env.run("diff", "a", "b", "c").returncode == 2
    r = admin_env.run("diff", "a", "b", "c", "d", "--ua", "x", "y")
    assert r.returncode == 2
