"""The seed 000/001 commands as real processes: svirsh and svirt-admin as root (direct mode,
in-process on the real libvirt test driver; sHype/ACM state in a private directory).

Direct mode opens a fresh test-driver connection per process, so what must survive from one
command to the next here is kept outside the domains (resource labels, the policy); VM labels
across commands are tested through the Service (and through svirtd in test_policy_edit)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import DEMO_POLICY, IMG, REPO

PY = sys.executable


def conf_file(cfg, tmp_path):
    from tests.frontend.conftest import write_root_file

    keys = ("uri", "ua", "pa", "audit_log", "auth_dir", "acm_state_dir", "label_store", "save_dir")
    text = (
        "[secured-virt]\n"
        + "".join(f"{k} = {getattr(cfg, k)}\n" for k in keys)
        + "audit_syslog = no\nacm = yes\n"
    )
    return write_root_file(tmp_path / "svirt.conf", text)


class Cli:
    def __init__(self, conf):
        self.conf = str(conf)

    def _run(self, prog, *args):
        argv = [PY, "-I", str(REPO / "bin" / prog), "--config", self.conf, *args]
        return subprocess.run(
            argv, capture_output=True, text=True, env={"PATH": "/usr/bin"}, timeout=120
        )

    def svirsh(self, *args):
        return self._run("svirsh", *args)

    def admin(self, *args):
        return self._run("svirt-admin", *args)


@pytest.fixture
def cli(svt_env, tmp_path):
    c = Cli(conf_file(svt_env, tmp_path))
    r = c.admin("policy", "load", str(DEMO_POLICY))
    assert r.returncode == 0, r.stderr
    return c


def test_resource_label_commands_and_seed_spellings(cli):
    img = IMG.format("alice-db")
    r = cli.svirsh("setlabel", "--resource", img, "sHype:res:demo.hosting:res_AliceData")
    assert r.returncode == 0, r.stderr
    assert "labelled ACM:demo.hosting:res_AliceData" in r.stdout
    r = cli.svirsh("getlabel", "--resource", img)
    assert (r.returncode, r.stdout) == (0, "ACM:demo.hosting:res_AliceData\n"), r.stderr
    r = cli.svirsh("--json", "getlabel", "--resource", img)
    assert json.loads(r.stdout)["record"] == {"type": 1, "label": "demo.hosting:res_AliceData"}
    r = cli.svirsh("rmlabel", "--resource", img)
    assert r.returncode == 0, r.stderr
    r = cli.svirsh("getlabel", "--resource", img)
    assert r.stdout == f"file:{img}: unlabeled\n"
    r = cli.svirsh("rmlabel", "--resource", img)
    assert r.returncode == 1 and "not labeled" in r.stderr


def test_vm_getlabel_string_and_json_record(cli):
    r = cli.svirsh("getlabel", "alice-web")
    assert r.returncode == 0, r.stderr
    r = cli.svirsh("--json", "getlabel", "alice-web")
    data = json.loads(r.stdout)
    assert data["record"] == {"type": 1, "label": "demo.hosting:__UNLABELED__"}


def test_policy_labels_table_and_json(cli):
    r = cli.admin("policy", "labels", "--type", "any")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert ["dom_AliceCorp", "VM", "AliceCorp", "AliceCorp"] in rows
    assert ["res_BobData", "resource", "BobCorp", "-"] in rows
    r = cli.admin("policy", "labels", "--json")
    recs = json.loads(r.stdout)["records"]
    assert {x["type"] for x in recs} == {"vm"}


def test_new_commands_have_help(cli):
    for cmd in ("rmlabel", "getlabel"):
        r = cli.svirsh(cmd, "--help")
        assert r.returncode == 0 and "--vif" in r.stdout, r.stderr
