"""sHype policy management through the use-case layer and svirt-admin policy: load, update
(all-or-nothing over the running domains, renames applied to the domains' own labels),
delegation to a policy manager by RBAC, offline compile."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys

import pytest

import policy
import policy.binfmt
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, Request
from secured_virt.service import Service

from .conftest import REPO, ROOT, ident, write_root_file

EX = policy.examples()
ADMIN = [sys.executable, "-I", str(REPO / "bin" / "svirt-admin")]


def xml_of(name: str) -> str:
    return EX[name].read_text()


def run(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


@pytest.fixture
def svc(svt_env, tmp_path):
    s = Service.from_config(
        dataclasses.replace(svt_env, acm=True, acm_state_dir=str(tmp_path / "acm"))
    )
    for name in ("alice-web", "bob-build", "carol-lab", "shared-dns"):
        s.backend.destroy(name)
    r = run(s, ROOT, "policy-load", xml=xml_of("xm-test"), file="xm-test", boot=True)
    assert r.ok, r.message
    return s


def start_labelled(svc, vm, label):
    disk = f"/var/lib/libvirt/images/{vm}.qcow2"
    assert run(svc, ROOT, "setlabel", domain=vm, label=label).ok
    r = run(svc, ROOT, "setlabel", domain=disk, label=label, resource=True)
    assert r.ok, r.message
    r = run(svc, ROOT, "start", domain=vm)
    assert r.ok, r.message


def test_show_map_binary(svc):
    show = run(svc, ROOT, "policy-show").data
    assert show["policy"] == "xm-test" and show["boot"] is True
    assert "xm-test" in run(svc, ROOT, "policy-map").data["map"]
    blob = base64.b64decode(run(svc, ROOT, "policy-binary").data["binary_b64"])
    assert blob == svc.acm.active.binary and len(blob) == 260  # the reference's xm-test size
    assert policy.binfmt.unpack_policy(blob)


def test_update_refused_while_a_removed_label_runs(svc):
    start_labelled(svc, "alice-web", "blue")
    dry = run(svc, ROOT, "policy-update", xml=xml_of("xm-test-update"), dry_run=True)
    assert dry.ok and dry.data["would_load"] is False
    assert any("blue" in e["message"] for e in dry.data["errors"])
    r = run(svc, ROOT, "policy-update", xml=xml_of("xm-test-update"))
    assert r.status == EXIT_FAILED and "nothing was changed" in r.message
    assert svc.acm.active.name == "xm-test"
    assert svc.acm.vm_label("alice-web") == "ACM:xm-test:blue"


def test_update_renames_the_running_domains_label(svc):
    start_labelled(svc, "alice-web", "green")
    r = run(svc, ROOT, "policy-update", xml=xml_of("xm-test-update"))
    assert r.ok, r.message
    assert svc.acm.active.name == "xm-test-update"
    assert svc.backend.lookup("alice-web").state == "running"
    got = run(svc, ROOT, "getlabel", domain="alice-web").data
    assert (got["policy"], got["label"]) == ("xm-test-update", "GREEN")


def test_policy_manager_is_delegated_by_rbac(svc, svt_env):
    # the demo's hostManager holds 16 (policy-show) on Domain-0 but not 39/40 (load/update)
    assert run(svc, ident("hostManager"), "policy-show").ok
    r = run(svc, ident("hostManager"), "policy-update", xml=xml_of("xm-test-update"))
    assert r.status == EXIT_DENIED and "Domain-0" in r.message
    assert run(svc, ident("alice"), "policy-show").status == EXIT_DENIED


def test_broken_policy_file_names_the_line(svc):
    bad = xml_of("xm-test").replace("<Name>red</Name>", "<Name>re:d</Name>", 1)
    r = run(svc, ROOT, "policy-load", xml=bad, file="bad.xml")
    assert r.status == EXIT_FAILED and "bad.xml:" in r.message
    assert svc.acm.active.name == "xm-test"


def test_cli_compile_offline(tmp_path):
    out = tmp_path / "c.bin"
    r = subprocess.run(
        [*ADMIN, "policy", "compile", str(EX["example.client_v1"]), "--binary", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size == 380 and "dom_Fun" in r.stdout


IDLE_NODE = """<node><domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
<name>idle</name><memory>1024</memory><os><type>hvm</type></os><test:runstate>5</test:runstate>
</domain></node>"""


def test_cli_load_show_as_root(svt_env, tmp_path):
    node = write_root_file(tmp_path / "idle.xml", IDLE_NODE)
    conf = write_root_file(
        tmp_path / "c.conf",
        (
            f"[secured-virt]\nuri = test://{node}\nua = {svt_env.ua}\npa = {svt_env.pa}\n"
            f"audit_log = {svt_env.audit_log}\naudit_syslog = no\nacm = yes\n"
            f"acm_state_dir = {tmp_path / 'acm'}\n"
        ),
    )
    r = subprocess.run(
        [*ADMIN, "--config", str(conf), "policy", "load", str(EX["example.client_v1"]), "--boot"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*ADMIN, "--config", str(conf), "policy", "show"], capture_output=True, text=True
    )
    assert "Policy name                     : example.client_v1" in r.stdout
    assert "activated for boot" in r.stdout
    r = subprocess.run(
        [*ADMIN, "--config", str(conf), "policy", "conflicts"], capture_output=True, text=True
    )
    assert r.stdout.strip() == "Protection1: cw_Sensitive, cw_Distrusted"


def test_reload_picks_up_a_policy_loaded_by_another_process(svc, svt_env, tmp_path):
    """svirtd's Service sees a policy that root loaded with svirt-admin elsewhere."""
    other = Service.from_config(svc.config)  # its own hypervisor connection, same state dir
    r = run(other, ROOT, "policy-update", xml=xml_of("xm-test-update"))
    assert r.ok, r.message
    assert svc.acm.active.name == "xm-test"
    res = svc.reload()
    assert res["ok"] and res["versions"]["acm"] == "xm-test-update 1.1"
    assert svc.acm.active.name == "xm-test-update"
    assert str(tmp_path / "acm" / "loaded_policy") in svc.watched_paths()


def test_a_caller_without_load_rights_is_refused_before_their_xml_is_parsed(svc, svt_env, mocker):
    """Parsing and compiling a policy is real work on untrusted input: someone who may neither
    load nor update a policy gets the (audited) denial without it."""
    parse = mocker.spy(policy.AcmPolicy, "from_xml")
    r = run(svc, ident("alice"), "policy-load", xml="<not-even-xml", file="junk.xml")
    assert r.status == EXIT_DENIED and r.check == "rbac"
    assert "policy-load" in r.message or "39" in r.message
    assert parse.call_count == 0
    with open(svt_env.audit_log) as fh:
        last = [json.loads(line) for line in fh][-1]
    assert (last["user"], last["op"], last["verdict"]) == ("alice", "policy-load", "denied")
    # root still gets the parse error, naming the file
    r = run(svc, ROOT, "policy-load", xml="<not-even-xml", file="junk.xml")
    assert r.status == EXIT_FAILED and "junk.xml" in r.message and parse.call_count == 1
