"""svirt-admin check / review / validate as a real process: the VM's real owner and label,
clean configuration errors, ACM state facts vs denials, host operations, help and exit codes.

Each test builds its own host: a libvirt test-driver node file, UA/PA and a configuration, all
root-owned like the real /etc/secured-virt files, and runs ``svirt-admin`` in a fresh process.
"""

from __future__ import annotations

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


# -- 2. configuration errors: one line naming file and line, exit 4, for every subcommand -------
BAD_CONFIGS = {
    "unknown key": ("[secured-virt]\nfoo = 1\n", 0o644, ":2: unknown key 'foo'"),
    "acm = maybe": ("[secured-virt]\nacm = maybe\n", 0o644, ":2:"),
    "world-writable": ("[secured-virt]\n", 0o666, "writable"),
}
SUBCOMMANDS = [
    ("check", "alice", "start", "web"),
    ("check", "alice", "start", "web", "--ua", "UA"),
    ("review", "user", "alice"),
    ("review", "vm", "web"),
    ("audit", "show"),
    ("audit", "verify"),
    ("validate",),
    ("validate", "--pa", "PA"),
    ("status",),
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
