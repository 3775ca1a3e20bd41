"""svirt-admin check / review / validate as a real process: the VM's real owner and label,
clean configuration errors, ACM state facts vs denials, host operations, help and exit codes.

Each test builds its own host: a libvirt test-driver node file, UA/PA and a configuration, all
root-owned like the real /etc/secured-virt files, and runs ``svirt-admin`` in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import policy
from policy.xsm import XsmHost

from .conftest import REPO, write_root_file

NS = "https://secured-virt.org/xmlns/svirt/1"
DEMO = REPO / "etc" / "demo"

UA = (
    "<UserConfiguration>"
    "<User name='alice'><UserRole role='Owners'/></User>"
    "<User name='bob'><UserRole role='Owners'/></User>"
    "<User name='carol'><UserRole role='Auditor'/></User>"
    "<User name='dave'><UserRole role='Blue'/></User>"
    "</UserConfiguration>"
)
PA = (
    "<RolePolicyDefinition>"
    "<Role name='Owners'><ManageVM type='owned'/>"
    "<ControlOperation><Accept><operation name='start'/><operation name='dominfo'/>"
    "</Accept></ControlOperation></Role>"
    "<Role name='Blue'><ManageVM type='label'><Label name='dom_AliceCorp'/></ManageVM>"
    "<ControlOperation><Accept><operation name='dominfo'/></Accept></ControlOperation></Role>"
    "<Role name='Auditor'><ManageVM type='individual'><VM name='HOST'/></ManageVM>"
    "<ControlOperation><Accept><operation name='audit-read'/></Accept></ControlOperation>"
    "</Role>"
    "</RolePolicyDefinition>"
)


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("policy files must be root-owned: run the tests as root")


def dom(name: str, *, owner: str | None = None, label: str | None = None, state: int = 5) -> str:
    meta = ""
    if owner or label:
        meta = f"<metadata><svirt:vm xmlns:svirt='{NS}'>"
        if owner:
            meta += f"<svirt:owner>{owner}</svirt:owner>"
        if label:
            meta += f"<svirt:label policy='demo.hosting' name='{label}'/>"
        meta += "</svirt:vm></metadata>"
    return (
        f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{name}</name>{meta}<memory>65536</memory>"
        f"<os><type>hvm</type></os><test:runstate>{state}</test:runstate></domain>"
    )


def host(tmp_path, *domains: str, acm: bool = False, uri: str | None = None, **extra) -> str:
    """Node file, UA/PA (the host object is 'HOST' in PA; host_object says so), config."""
    node = write_root_file(tmp_path / "node.xml", "<node>" + "".join(domains) + "</node>")
    host_object = extra.pop("host_object", "HOST")
    ua = write_root_file(tmp_path / "ua.xml", UA)
    pa = write_root_file(tmp_path / "pa.xml", PA.replace("'HOST'", f"'{host_object}'"))
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o700, exist_ok=True)
    text = (
        f"[secured-virt]\nuri = {uri or f'test://{node}'}\nua = {ua}\npa = {pa}\n"
        f"host_object = {host_object}\naudit_log = {logdir / 'audit.log'}\naudit_syslog = no\n"
    )
    if acm:
        state = tmp_path / "acm"
        st = XsmHost(state).set_policy(
            (DEMO / "acm-policy.xml").read_bytes(), policy.XS_INST_LOAD | policy.XS_INST_BOOT, True
        )
        assert st.xserr == 0
        text += f"acm = yes\nacm_state_dir = {state}\n"
    text += "".join(f"{k} = {v}\n" for k, v in extra.items())
    return str(write_root_file(tmp_path / "svirt.conf", text))


def admin(*args: str, conf: str | None = None) -> subprocess.CompletedProcess:
    """The real svirt-admin of this work tree, as root, in a fresh process."""
    argv = [sys.executable, "-m", "secured_virt.cli.admin"]
    if conf is not None:
        argv += ["--config", conf]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)},
    )


# -- 1. the VM's real owner and label, as the gate reads them ------------------------------------
def test_check_uses_the_vms_real_owner_and_label(tmp_path):
    conf = host(tmp_path, dom("web", owner="alice", label="dom_AliceCorp"))
    r = admin("check", "alice", "start", "web", "--explain", conf=conf)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ALLOWED: alice start")
    assert f"attributes from the VM's metadata on test://{tmp_path}/node.xml: owner alice" in (
        r.stdout
    )
    r = admin("check", "bob", "start", "web", conf=conf)  # bob holds 'owned', but not this VM
    assert r.returncode == 3, r.stdout + r.stderr
    r = admin("check", "dave", "dominfo", "web", conf=conf)  # a 'label' scope: the real label
    assert r.returncode == 0, r.stdout + r.stderr
    j = json.loads(admin("check", "alice", "start", "web", "--json", conf=conf).stdout)
    assert j["allowed"] is True
    assert j["attrs"] == {"owner": "alice", "label": "dom_AliceCorp"}
    assert j["attrs_from"]["found"] is True and j["attrs_from"]["source"] == "vm"


def test_explicit_flags_override_the_real_attributes_and_say_so(tmp_path):
    conf = host(tmp_path, dom("web", owner="alice", label="dom_AliceCorp"))
    r = admin("check", "bob", "start", "web", "--owner", "bob", "--explain", conf=conf)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--owner bob overrides the VM's owner 'alice'" in r.stdout
    r = admin("check", "dave", "dominfo", "web", "--label", "dom_BobCorp", "--explain", conf=conf)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "--label dom_BobCorp overrides the VM's label 'dom_AliceCorp'" in r.stdout
    j = json.loads(
        admin("check", "alice", "start", "web", "--owner", "bob", "--json", conf=conf).stdout
    )
    assert j["allowed"] is False and j["attrs"] == {"owner": "bob", "label": "dom_AliceCorp"}
    assert j["attrs_from"]["vm_attrs"] == {"owner": "alice", "label": "dom_AliceCorp"}


def test_a_missing_vm_or_an_unreachable_backend_falls_back_to_the_flags(tmp_path):
    conf = host(tmp_path, dom("web", owner="alice"))
    r = admin("check", "alice", "start", "ghost", "--explain", conf=conf)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "VM 'ghost' was not found on test://" in r.stdout
    assert "the attributes come from the flags only: none" in r.stdout
    r = admin("check", "alice", "start", "ghost", "--owner", "alice", "--explain", conf=conf)
    assert r.returncode == 0 and "flags only: owner alice" in r.stdout, r.stdout + r.stderr

    gone = str(tmp_path / "no-such-node.xml")
    (tmp_path / "other").mkdir()
    conf = host(tmp_path / "other", uri=f"test://{gone}")
    r = admin("check", "alice", "start", "web", "--owner", "alice", "--explain", conf=conf)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert f"the backend test://{gone} could not be reached" in r.stdout


def test_review_vm_uses_the_vms_real_owner(tmp_path):
    conf = host(tmp_path, dom("web", owner="alice", label="dom_AliceCorp"))
    r = admin("review", "vm", "web", "--json", conf=conf)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["attrs"] == {"owner": "alice", "label": "dom_AliceCorp"}
    assert data["operations"]["start"] == ["alice"]
    assert data["operations"]["dominfo"] == ["alice", "dave"]
    r = admin("review", "vm", "web", "--owner", "bob", "--json", conf=conf)
    assert json.loads(r.stdout)["operations"]["start"] == ["bob"]


# -- 2. configuration errors: one line naming file and line, exit 4, for every subcommand -------
BAD_CONFIGS = {
    "unknown key": ("[secured-virt]\nfoo = 1\n", 0o644, ":2: unknown key 'foo'"),
    "acm = maybe": ("[secured-virt]\nacm = maybe\n", 0o644, ":2:"),
    "world-writable": ("[secured-virt]\n", 0o666, "writable"),
}
SUBCOMMANDS = [
    ("check", "alice", "start", "web"),
    ("check", "carol", "audit-read"),
    ("check", "alice", "start", "web", "--ua", "UA"),
    ("review", "user", "alice"),
    ("review", "vm", "web"),
    ("audit", "show"),
    ("audit", "verify"),
    ("validate",),
    ("validate", "--pa", "PA"),
    ("status",),
    ("policy", "show"),
    ("policy", "labels"),
]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
@pytest.mark.parametrize("bad", sorted(BAD_CONFIGS))
def test_a_bad_configuration_is_one_clean_line_and_exit_4(tmp_path, bad, argv):
    text, mode, where = BAD_CONFIGS[bad]
    conf = write_root_file(tmp_path / "bad.conf", text, mode)
    ua = write_root_file(tmp_path / "ua.xml", UA)
    pa = write_root_file(tmp_path / "pa.xml", PA)
    argv = [{"UA": str(ua), "PA": str(pa)}.get(a, a) for a in argv]
    r = admin(*argv, conf=str(conf))
    assert r.returncode == 4, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"svirt-admin: {conf}"), r.stderr
    assert where in r.stderr
    if "--ua" in argv or "--pa" in argv:  # the other file came from the configuration
        assert "as --pa was not given" in r.stderr or "as --ua was not given" in r.stderr


def test_a_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "nope.conf"
    for argv in (["check", "alice", "start", "web"], ["review", "user", "alice"], ["validate"]):
        r = admin(*argv, conf=str(missing))
        assert r.returncode == 4, r.stderr
        assert r.stderr == f"svirt-admin: {missing}: no such configuration file\n"


def test_ua_alone_takes_the_configured_pa(tmp_path):
    """By design (see _load_rbac): --ua or --pa replaces its own file, the other is configured."""
    conf = host(tmp_path, dom("web", owner="alice"))
    other = write_root_file(tmp_path / "ua2.xml", UA.replace("'bob'", "'erin'"))
    r = admin("validate", "--ua", str(other), conf=conf)
    assert r.returncode == 0, r.stderr
    assert f"{other}: OK (4 users)" in r.stdout and f"{tmp_path}/pa.xml: OK" in r.stdout


# -- 3. a state fact of the dry run is no ACM denial ---------------------------------------------
def test_an_already_running_domain_is_no_acm_denial(tmp_path):
    conf = host(
        tmp_path,
        dom("web", owner="alice", label="dom_AliceCorp", state=1),
        dom("rival", owner="bob", label="dom_BobCorp", state=5),
        acm=True,
    )
    r = admin("check", "alice", "start", "web", "--explain", conf=conf)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ALLOWED: alice start")
    assert "note: domain 'web' is already running" in r.stdout
    assert "state: NOTE (state, not a policy check)" in r.stdout
    assert "chinese_wall: PERMITTED" in r.stdout
    j = json.loads(admin("check", "alice", "start", "web", "--json", conf=conf).stdout)
    assert j["allowed"] is True and j["acm"]["allowed"] is True
    assert j["acm"]["state"] and "already running" in j["acm"]["state"][0]


def test_a_chinese_wall_conflict_still_denies(tmp_path):
    conf = host(
        tmp_path,
        dom("web", owner="alice", label="dom_AliceCorp", state=5),
        dom("rival", owner="bob", label="dom_BobCorp", state=1),
        acm=True,
    )
    r = admin("check", "alice", "start", "web", "--explain", conf=conf)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "chinese_wall: DENIED" in r.stdout and "Competitors" in r.stdout


# -- 4. host operations need no VM ---------------------------------------------------------------
def test_host_operations_are_checked_on_the_host_object(tmp_path):
    conf = host(tmp_path, dom("web", owner="alice"), host_object="hv0")
    r = admin("check", "carol", "audit-read", conf=conf)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ALLOWED: carol audit-read (operation 44) on hv0")
    assert r.stderr == ""
    j = json.loads(admin("check", "carol", "audit-read", "--json", conf=conf).stdout)
    assert j["vm"] == "hv0" and j["allowed"] is True
    # a VM for a host operation: answered as asked, with a hint
    r = admin("check", "carol", "audit-read", "web", conf=conf)
    assert r.returncode == 3 and "on web" in r.stdout
    assert "hint: 'audit-read' is a host operation" in r.stderr and "'hv0'" in r.stderr
    # the host object for a VM operation: the same
    r = admin("check", "alice", "start", "hv0", conf=conf)
    assert r.returncode == 3
    assert "hint: 'start' is a VM operation" in r.stderr
    # a VM operation without a VM is a usage error
    r = admin("check", "alice", "start", conf=conf)
    assert r.returncode == 2 and "'start' acts on a VM" in r.stderr


# -- 5. help, usage and exit codes ---------------------------------------------------------------
def test_help_lists_arguments_and_exit_codes():
    r = admin("check", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "USER user name, as in the UA file" in text
    for line in ("0 allowed", "3 denied", "4 bad policy or configuration", "2 usage error"):
        assert line in text, line
    text = " ".join(admin("validate", "--help").stdout.split())
    assert "0 valid" in text and "4 bad policy" in text and "cannot be trusted" in text


def test_no_command_is_a_usage_error_on_stderr():
    r = admin()
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("usage: svirt-admin")


def test_hidden_subcommand_is_not_offered():
    r = admin("bogus")
    assert r.returncode == 2
    assert "invalid choice: 'bogus'" in r.stderr and "'check'" in r.stderr
    assert "_complete-names" not in r.stderr
    assert "_complete-names" not in admin("--help").stdout


def test_validate_exit_codes_match_the_code(tmp_path):
    """validate: 4 for a file that is not valid or cannot be trusted (README, man page)."""
    ua = write_root_file(tmp_path / "ua.xml", UA)
    pa = write_root_file(tmp_path / "pa.xml", PA)
    assert admin("validate", "--ua", str(ua), "--pa", str(pa)).returncode == 0
    os.chmod(ua, 0o666)
    r = admin("validate", "--ua", str(ua), "--pa", str(pa))
    assert r.returncode == 4, r.stdout + r.stderr
    assert str(ua) in r.stderr


# -- 6. swapped --ua and --pa ---------------------------------------------------------------------
def test_swapped_ua_and_pa_are_named(tmp_path):
    conf = host(tmp_path, dom("web", owner="alice"))
    ua, pa = tmp_path / "ua.xml", tmp_path / "pa.xml"
    r = admin("validate", "--ua", str(pa), "--pa", str(ua))
    assert r.returncode == 4
    assert f"{pa}:1: this is a PA file (<RolePolicyDefinition>)" in r.stderr
    assert "swapped" in r.stderr and "XSD" not in r.stderr
    r = admin("check", "alice", "start", "web", "--ua", str(pa), "--pa", str(ua), conf=conf)
    assert r.returncode == 4 and "this is a UA file (<UserConfiguration>)" in r.stderr
