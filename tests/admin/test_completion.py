"""Bash completion for svirsh and svirt-admin, sourced into a real bash and driven like readline.

VM names come from the real svirsh (direct mode on the libvirt test driver with the demo node),
roles and users from the real svirt-admin reading the configured UA/PA.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from admin_helpers import DEMO, REPO, child_env

from secured_virt.access.operations import CATALOGUE
from secured_virt.cli.admin import build_parser
from secured_virt.cli.commands import COMMANDS

SVIRSH = REPO / "completion" / "svirsh"
ADMIN = REPO / "completion" / "svirt-admin"
BIN = str(Path(sys.executable).parent)  # where the svirsh / svirt-admin entry points live

DRIVER = r"""
source "$1"; fn="$2"; COMP_LINE="$3"; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"; COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
if [[ "$COMP_LINE" == *" " ]]; then COMP_WORDS+=(""); COMP_CWORD=$((COMP_CWORD + 1)); fi
"$fn"
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(script: Path, line: str, *, wordbreaks: str | None = None) -> list[str]:
    """What pressing TAB at the end of ``line`` offers."""
    fn = "_svirsh" if script.name == "svirsh" else "_svirt_admin"
    env = child_env({"PATH": f"{BIN}:/usr/bin:/bin"})
    prefix = ""
    if wordbreaks is not None:
        env["WB"] = wordbreaks
        prefix = 'COMP_WORDBREAKS="$WB"\n'

    r = subprocess.run(
        ["/bin/bash", "--norc", "--noprofile", "-c", prefix + DRIVER, "bash", script, fn, line],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.split("\n") if w]


@pytest.fixture
def node_env(admin_env, test_users):
    """admin_env plus the demo node on the libvirt test driver (for svirsh list); the demo's
    alice and bob are the real accounts svt-alice and svt-bob (``--as`` wants a real user)."""
    node = admin_env.etc / "node.xml"
    shutil.copy(DEMO / "node.xml", node)
    ua = admin_env.ua.read_text()
    for user in ("alice", "bob"):
        ua = ua.replace(f'<User name="{user}">', f'<User name="svt-{user}">')
    admin_env.ua.write_text(ua)
    admin_env.write_config(
        uri=f"test://{node}",
        auth_dir=admin_env.base / "ts",
        label_store=admin_env.base / "labels.xml",
        acm_state_dir=admin_env.base / "acm",
    )
    return admin_env


ALL_VMS = {"alice-web", "alice-db", "bob-build", "carol-lab", "shared-dns"}


def test_scripts_are_generated_from_the_current_definitions():
    r = subprocess.run(
        [sys.executable, str(REPO / "completion" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr + "\n(regenerate: python completion/generate.py)"
    for script in (SVIRSH, ADMIN):
        assert subprocess.run(["/bin/bash", "-n", script]).returncode == 0
        assert os.stat(script).st_mode & 0o777 == 0o644


# -- svirsh ---------------------------------------------------------------------------------------
def test_svirsh_commands():
    assert set(complete(SVIRSH, "svirsh ")) == {*COMMANDS, "help", "operations"}
    assert complete(SVIRSH, "svirsh sna") == [n for n in COMMANDS if n.startswith("sna")]
    assert complete(SVIRSH, "svirsh --json dest") == ["destroy"]


def test_svirsh_global_options_are_the_ones_svirsh_accepts():
    from secured_virt.cli.svirsh import parse_globals

    offered = complete(SVIRSH, "svirsh -")
    assert {"--connect", "--as", "--config", "--socket", "--json", "-k"} <= set(offered)
    for opt in offered:
        parse_globals([opt, "value", "list"])  # raises UsageError on an unknown option


def test_svirsh_command_options():
    want = [f for o in COMMANDS["list"].opts for f in o.flags] + ["--json", "-h", "--help"]
    assert complete(SVIRSH, "svirsh list -") == want
    assert complete(SVIRSH, "svirsh start --p") == ["--paused"]


def test_svirsh_vm_names_are_what_the_caller_may_see(node_env):
    cfg = node_env.config
    assert set(complete(SVIRSH, f"svirsh --config {cfg} start ")) == ALL_VMS
    # the policy decides: alice sees her two VMs only
    assert set(complete(SVIRSH, f"svirsh --config {cfg} --as svt-alice start ")) == {
        "alice-web",
        "alice-db",
    }
    assert complete(SVIRSH, f"svirsh --config={cfg} --as svt-bob dominfo b") == ["bob-build"]
    # after the domain, save wants a file name
    assert complete(SVIRSH, f"svirsh --config {cfg} save alice-web {node_env.etc}/no") == [
        f"{node_env.etc}/node.xml"
    ]


def test_svirsh_without_a_reachable_policy_offers_nothing(node_env):
    line = f"svirsh --config {node_env.config} --as svt-alice start "
    assert complete(SVIRSH, line)
    os.chmod(node_env.pa, 0o666)  # untrusted: svirsh fails closed, completion stays quiet
    assert complete(SVIRSH, line) == []


def test_svirsh_value_options_are_not_mistaken_for_arguments(node_env):
    cfg = node_env.config
    assert complete(SVIRSH, f"svirsh --config {cfg} attach-disk --driver ") == []
    line = f"svirsh --config {cfg} --as svt-alice attach-disk --driver qemu alice-w"
    assert complete(SVIRSH, line) == ["alice-web"]


# -- svirt-admin ----------------------------------------------------------------------------------
def test_admin_subcommands_match_the_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    visible = {n for n in sub.choices if not n.startswith("_")}
    assert set(complete(ADMIN, "svirt-admin ")) == visible
    assert complete(ADMIN, "svirt-admin rm") == ["rm-role"]


def test_admin_roles_users_and_operations(node_env):
    cfg = node_env.config
    roles = complete(ADMIN, f"svirt-admin --config {cfg} assign alice ")
    assert roles == ["WebTeam", "BuildTeam", "Auditor", "HostOSManager"]
    users = complete(ADMIN, f"svirt-admin --config {cfg} deassign ")
    # UA first, then accounts
    assert users[:4] == ["svt-alice", "svt-bob", "carol", "hostManager"]
    assert "root" in users and len(users) == len(set(users))
    assert complete(ADMIN, f"svirt-admin --config {cfg} grant WebTeam sus") == ["suspend"]
    assert set(complete(ADMIN, "svirt-admin grant X ")) == {o.name for o in CATALOGUE}
    assert complete(ADMIN, f"svirt-admin --config {cfg} add-role X --inherits B") == ["BuildTeam"]


def test_admin_scopes_and_vm_names(node_env):
    cfg = node_env.config
    assert complete(ADMIN, "svirt-admin grant WebTeam start ") == [
        "vm:",
        "pattern:",
        "label:",
        "all",
        "owned",
        "host",
    ]
    # with ':' in COMP_WORDBREAKS (bash's default) only the part after the colon is replaced
    line = f"svirt-admin --config {cfg} revoke WebTeam start vm:alice"
    assert complete(ADMIN, line) == ["alice-web", "alice-db"]
    assert complete(ADMIN, line, wordbreaks=" \t\n\"'><=;|&(") == ["vm:alice-web", "vm:alice-db"]
    assert set(complete(ADMIN, f"svirt-admin --config {cfg} check alice start ")) == ALL_VMS


def test_admin_choices_files_and_options(admin_env):
    assert complete(ADMIN, "svirt-admin edit ") == ["ua", "pa"]
    assert complete(ADMIN, "svirt-admin review r") == ["role"]
    assert complete(ADMIN, f"svirt-admin diff --ua {admin_env.etc}/u") == [
        f"{admin_env.etc}/ua.xml"
    ]
    # --ua takes two files, then options again
    line = f"svirt-admin diff --ua {admin_env.ua} {admin_env.etc}/p"
    assert complete(ADMIN, line) == [f"{admin_env.etc}/pa.xml"]
    assert complete(ADMIN, f"svirt-admin diff --ua {admin_env.ua} {admin_env.ua} --j") == ["--json"]
    assert complete(ADMIN, "svirt-admin rm-role X --f") == ["--force"]
    assert complete(ADMIN, "svirt-admin assign alice X --expires ") == []
    assert complete(ADMIN, "svirt-admin --c") == ["--config"]
