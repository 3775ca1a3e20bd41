"""svirt-admin check --explain across RBAC and ACM, policy diff, and audit verify on a
tampered log — as real processes, with real files."""

from __future__ import annotations

import json
import subprocess
import sys

import policy
from policy.xsm import XsmHost
from secured_virt.access.audit import AuditLog

from .conftest import REPO, write_root_file

ADMIN = [sys.executable, "-I", str(REPO / "bin" / "svirt-admin")]
NS = "https://secured-virt.org/xmlns/svirt/1"
DEMO = REPO / "etc" / "demo"


def dom(name, label, state):
    return (
        f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{name}</name><metadata><svirt:vm xmlns:svirt='{NS}'><svirt:label "
        f"policy='demo.hosting' name='{label}'/></svirt:vm></metadata><memory>65536</memory>"
        f"<os><type>hvm</type></os><test:runstate>{state}</test:runstate></domain>"
    )


def setup(tmp_path):
    node = write_root_file(
        tmp_path / "node.xml",
        "<node>" + dom("web", "dom_AliceCorp", 5) + dom("rival", "dom_BobCorp", 1) + "</node>",
    )
    ua = write_root_file(
        tmp_path / "ua.xml",
        "<UserConfiguration><User name='alice'><UserRole role='R'/></User></UserConfiguration>",
    )
    pa = write_root_file(
        tmp_path / "pa.xml",
        "<RolePolicyDefinition><Role name='R'>"
        "<ManageVM type='individual'><VM name='web'/></ManageVM>"
        "<ControlOperation><Accept><operation name='start'/>"
        "<operation name='dominfo'/></Accept></ControlOperation></Role>"
        "</RolePolicyDefinition>",
    )
    acm = tmp_path / "acm"
    host = XsmHost(acm)
    st = host.set_policy(
        (DEMO / "acm-policy.xml").read_bytes(), policy.XS_INST_LOAD | policy.XS_INST_BOOT, True
    )
    assert st.xserr == 0
    (tmp_path / "log").mkdir(mode=0o700)
    return write_root_file(
        tmp_path / "c.conf",
        (
            f"[secured-virt]\nuri = test://{node}\nua = {ua}\npa = {pa}\nacm = yes\n"
            f"acm_state_dir = {acm}\naudit_log = {tmp_path / 'log' / 'audit.log'}\n"
            "audit_syslog = no\n"
        ),
    )


def admin(conf, *args):
    return subprocess.run(
        [*ADMIN, "--config", str(conf), *args], capture_output=True, text=True, timeout=60
    )


def test_explain_shows_rbac_allowed_but_acm_denied(tmp_path):
    conf = setup(tmp_path)
    r = admin(conf, "check", "alice", "start", "web", "--explain")
    assert r.returncode == 3, r.stdout + r.stderr
    out = r.stdout
    assert out.startswith("DENIED: alice start")
    assert "role R accepts operation 6" in out  # the RBAC grant
    # each half says its own verdict under the DENIED header (issue 19): never a bare
    # "decision: ALLOWED" that seems to contradict it
    lines = out.splitlines()
    assert lines[1].startswith("  RBAC: allowed - ") and lines[2].startswith("  ACM: denied - ")
    assert "RBAC (roles in UA/PA):" in out and "  RBAC decision: ALLOWED" in out
    assert not any(line.startswith("decision:") for line in lines), out
    assert "sHype/ACM (mandatory policy):" in out
    assert "chinese_wall: DENIED" in out and "Competitors" in out and "'rival'" in out
    assert "VM label ACM:demo.hosting:dom_AliceCorp (ssidref 0x00020002)" in out
    # an operation that instantiates nothing is not mediated
    r = admin(conf, "check", "alice", "dominfo", "web", "--explain")
    assert r.returncode == 0 and "no ACM hook applies" in r.stdout
    j = json.loads(admin(conf, "check", "alice", "start", "web", "--json").stdout)
    assert j["allowed"] is False and j["acm"]["mediated"] is True


def test_policy_diff_names_renames_and_removals():
    ex = policy.examples()
    r = subprocess.run(
        [*ADMIN, "policy", "diff", str(ex["xm-test"]), str(ex["xm-test-update"])],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "- VM labels: blue" in r.stdout and "~ label renamed: green -> GREEN" in r.stdout


def test_audit_verify_names_the_tampered_record(tmp_path):
    logdir = tmp_path / "alog"
    logdir.mkdir(mode=0o700)
    log = AuditLog(str(logdir / "audit.log"), use_syslog=False)
    for i in range(5):
        log.record_decision(
            uid=1000 + i,
            user=f"u{i}",
            op_id=6,
            op="start",
            vm=f"vm{i}",
            allowed=i % 2 == 0,
            check="rbac",
            rule="r",
        )
    r = subprocess.run(
        [*ADMIN, "audit", "verify", "--log", str(logdir / "audit.log")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "5 records, chain intact" in r.stdout
    lines = (logdir / "audit.log").read_text().splitlines()
    lines[1] = lines[1].replace('"verdict":"denied"', '"verdict":"allowed"')
    (logdir / "audit.log").write_text("\n".join(lines) + "\n")
    r = subprocess.run(
        [*ADMIN, "audit", "verify", "--log", str(logdir / "audit.log")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "line 2" in r.stdout and "BROKEN" in r.stdout


def test_audit_show_names_a_recovered_torn_line(tmp_path):
    """After a writer died mid-line, verify says so; the next append recovers the line, and
    ``audit show`` says what was cut off (``--json`` carries the bytes)."""
    logdir = tmp_path / "alog"
    logdir.mkdir(mode=0o700)
    path = logdir / "audit.log"
    log = AuditLog(str(path), use_syslog=False)
    log.append({"type": "note"})
    with open(path, "ab") as fh:
        fh.write(b'{"check":"rbac","op":"sta')
    run = [*ADMIN, "audit"]
    r = subprocess.run([*run, "verify", "--log", str(path)], capture_output=True, text=True)
    assert r.returncode == 1 and "line 2: incomplete last line" in r.stdout
    log.append({"type": "note"})
    r = subprocess.run([*run, "verify", "--log", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and "3 records, chain intact" in r.stdout
    r = subprocess.run([*run, "show", "--log", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "#2 RECOVERED 25 bytes of an incomplete line cut off at offset" in r.stdout


def test_validate_policy_file(tmp_path):
    ex = policy.examples()
    r = subprocess.run(
        [*ADMIN, "validate", "--policy", str(ex["example.client_v1"])],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "OK (sHype policy example.client_v1" in r.stdout
    bad = tmp_path / "bad.xml"
    bad.write_text(ex["xm-test"].read_text().replace("<Name>red</Name>", "<Name>r:ed</Name>", 1))
    r = subprocess.run([*ADMIN, "validate", "--policy", str(bad)], capture_output=True, text=True)
    assert r.returncode == 4 and "bad.xml:" in r.stderr  # a bad policy (issue 19)
