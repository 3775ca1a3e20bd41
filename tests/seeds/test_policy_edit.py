"""Seed 000's policy editing (XSMPolicy: header, types, conflict sets, labels) as commands:
``svirt-admin policy set-header|add-type|rm-type|add-conflict|rm-conflict|add-label|
rm-label``, each one all-or-nothing update of the loaded policy with the dry-run preview and
the refusal codes of ``policy update``, and the request ``policy-edit`` (operation 43) through
the real svirtd for a delegated policy manager."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

from .conftest import DEMO_POLICY, IMG, REPO, ROOT, ident, run


def test_each_edit_is_an_update_of_the_loaded_policy(demo):
    r = run(demo, ROOT, "policy-edit", edit="add-type", component="ste", type="CarolCorp")
    assert r.ok, r.message
    assert demo.acm.active.version == "1.1" and "CarolCorp" in demo.acm.active.policy.ste_types
    r = run(demo, ROOT, "policy-edit", edit="add-type", component="chwall", type="CarolCorp")
    assert r.ok, r.message
    # (STE AliceCorp: Domain-0's SystemManagement must hold a created domain's STE types)
    r = run(demo, ROOT, "policy-edit", edit="add-label", kind="vm", name="dom_CarolCorp",
            ste="AliceCorp", chwall="CarolCorp")  # fmt: skip
    assert r.ok, r.message
    r = run(demo, ROOT, "policy-edit", edit="add-conflict", name="Rivals",
            types=["AliceCorp", "CarolCorp"])  # fmt: skip
    assert r.ok, r.message
    r = run(demo, ROOT, "policy-edit", edit="set-header", policyurl="https://example.org/p")
    assert r.ok, r.message
    p = demo.acm.active.policy
    assert p.header.url == "https://example.org/p" and p.version == "1.5"
    assert {cs.name for cs in p.conflict_sets} == {"Competitors", "Rivals"}
    # the edited policy is enforced at once: Carol's label conflicts with a running AliceCorp
    assert run(demo, ROOT, "setlabel", domain="alice-db", label="dom_CarolCorp").ok
    assert run(demo, ROOT, "destroy", domain="alice-web").ok
    assert run(demo, ROOT, "setlabel", domain="alice-web", label="dom_AliceCorp").ok
    assert run(demo, ROOT, "setlabel", domain=IMG.format("alice-web"), label="res_AliceData",
               resource=True).ok  # fmt: skip
    assert run(demo, ROOT, "start", domain="alice-web").ok
    r = run(demo, ROOT, "start", domain="alice-db")
    assert r.status == EXIT_DENIED and "Rivals" in r.message
    r = run(demo, ROOT, "policy-edit", edit="rm-conflict", name="Rivals")
    assert r.ok, r.message


def test_an_edit_the_running_domains_forbid_is_refused_whole(demo):
    assert run(demo, ROOT, "destroy", domain="alice-web").ok
    assert run(demo, ROOT, "setlabel", domain="alice-web", label="dom_AliceCorp").ok
    assert run(demo, ROOT, "setlabel", domain=IMG.format("alice-web"), label="res_AliceData",
               resource=True).ok  # fmt: skip
    assert run(demo, ROOT, "start", domain="alice-web").ok
    before = demo.acm.active.sha1
    preview = run(demo, ROOT, "policy-edit", edit="rm-label", name="dom_AliceCorp", kind="vm",
                  dry_run=True)  # fmt: skip
    assert preview.ok and preview.data["would_load"] is False
    assert "alice-web" in preview.data["errors"][0]["message"]
    assert "dom_AliceCorp" in preview.data["old_xml"]
    assert "dom_AliceCorp" not in preview.data["new_xml"]
    r = run(demo, ROOT, "policy-edit", edit="rm-label", name="dom_AliceCorp", kind="vm")
    assert r.status == EXIT_FAILED and "nothing was changed" in r.message
    assert demo.acm.active.sha1 == before
    r = run(demo, ROOT, "policy-edit", edit="rm-type", component="ste", type="AliceCorp")
    assert r.status == EXIT_FAILED and "still used" in r.message
    r = run(demo, ROOT, "policy-edit", edit="set-header", version="0.9")
    assert r.status == EXIT_FAILED and "not higher" in r.message
    assert demo.acm.active.sha1 == before


def test_bad_edits_are_usage_errors_before_any_decision(demo):
    for args in (
        {"edit": "nope"},
        {"edit": "add-type", "component": "flask", "type": "x"},
        {"edit": "add-conflict", "name": "X"},
        {"edit": "add-label", "kind": "dom", "name": "x", "ste": "AliceCorp"},
        {"edit": ["add-type"]},
    ):
        assert run(demo, ROOT, "policy-edit", **args).status == EXIT_USAGE, args


def test_policy_edit_needs_operation_43(demo):
    r = run(demo, ident("alice"), "policy-edit", edit="add-type", component="ste", type="X")
    assert r.status == EXIT_DENIED and "'policy-edit' (operation 43)" in r.message
    assert "X" not in demo.acm.active.policy.ste_types


def test_the_real_svirt_admin_edits_and_previews(svt_env, tmp_path):
    from .test_cli_real import Cli, conf_file

    cli = Cli(conf_file(svt_env, tmp_path))
    assert cli.admin("policy", "load", str(DEMO_POLICY)).returncode == 0
    r = cli.admin("policy", "add-type", "ste", "CarolCorp", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "+ STE types: CarolCorp" in r.stdout and "would be loaded" in r.stdout
    assert "CarolCorp" not in cli.admin("policy", "types").stdout  # a preview changes nothing
    for argv in (
        ("add-type", "ste", "CarolCorp"),
        ("add-type", "chwall", "CarolCorp"),
        ("add-label", "vm", "dom_CarolCorp", "--ste", "CarolCorp", "--chwall", "CarolCorp"),
        ("add-label", "res", "res_CarolData", "--ste", "CarolCorp"),
        ("add-conflict", "Rivals", "AliceCorp", "CarolCorp"),
        ("set-header", "--date", "2026-01-01"),
    ):
        r = cli.admin("policy", *argv)
        assert r.returncode == 0, (argv, r.stderr)
    r = cli.admin("policy", "labels", "--type", "any")
    assert ["dom_CarolCorp", "VM", "CarolCorp", "CarolCorp"] in [
        line.split() for line in r.stdout.splitlines()
    ]
    r = cli.admin("policy", "conflicts")
    assert "Rivals: AliceCorp, CarolCorp" in r.stdout
    r = cli.admin("policy", "rm-type", "ste", "CarolCorp")
    assert r.returncode == EXIT_FAILED and "still used" in r.stderr
    r = cli.admin("policy", "add-conflict", "Lonely")
    assert r.returncode == EXIT_USAGE
    r = cli.admin("policy", "show", "--json")
    assert json.loads(r.stdout)["version"] == "1.6"


@pytest.mark.integration
def test_a_delegated_policy_manager_edits_through_svirtd(test_users, readable_src, as_user):
    """svt-carol holds policy-edit (43) on Domain-0; the real svirtd runs the edit as hers,
    audited; svt-alice (no such grant) is refused."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
    from svtd_helpers import RealEnv, call_as, write_root_file

    env = RealEnv(acm="yes")
    try:
        pa = env.pa.read_text().replace(
            '<operation id="62"/>', '<operation id="62"/><operation name="policy-edit"/>'
        )
        write_root_file(env.pa, pa)
        subprocess.run(
            [sys.executable, "-I", str(REPO / "bin" / "svirt-admin"), "--config",
             str(env.config), "policy", "load", str(DEMO_POLICY)],
            check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        d = env.daemon().start().wait_ready()
        try:
            edit = {"edit": "add-type", "component": "ste", "type": "CarolCorp"}
            carol = call_as(
                as_user, test_users["svt-carol"], readable_src, env.socket, "policy-edit", edit
            )
            assert carol["status"] == EXIT_OK, carol
            assert carol["data"]["version"] == "1.1"
            alice = call_as(
                as_user, test_users["svt-alice"], readable_src, env.socket, "policy-edit", edit
            )
            assert alice["status"] == EXIT_DENIED
            recs = [
                r
                for r in env.audit_records()
                if r.get("op") == "policy-edit" and r.get("type") == "decision"
            ]
            assert {(r["user"], r["verdict"]) for r in recs} >= {
                ("svt-carol", "allowed"),
                ("svt-alice", "denied"),
            }
        finally:
            d.stop()
    finally:
        env.cleanup()
