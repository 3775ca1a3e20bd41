"""Review findings on ``sudo svirsh`` (direct mode for a non-root user): the process runs as
root, so whatever the *user* may pick — the hypervisor URI, the configuration file — must be
refused, exactly as svirtd refuses it.

sudo is simulated the way identity.py trusts it: real uid 0 with SUDO_UID/SUDO_USER naming a
real account (svt-alice).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import policy
from secured_virt.cli import admin, svirsh
from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED

from .conftest import write_root_file
from .test_svirsh_cli import conf_file


@pytest.fixture
def as_sudo_alice(test_users, monkeypatch):
    pw = test_users["svt-alice"]
    monkeypatch.setenv("SUDO_UID", str(pw.pw_uid))
    monkeypatch.setenv("SUDO_GID", str(pw.pw_gid))
    monkeypatch.setenv("SUDO_USER", pw.pw_name)
    return pw


def test_sudo_user_cannot_choose_the_hypervisor_uri(as_sudo_alice, tmp_path, capsys):
    marker = tmp_path / "ran"
    script = write_root_file(tmp_path / "x.sh", f"#!/bin/sh\nid -u > {marker}\n", 0o755)
    uri = f"test+ext:///default?command={script}"
    rc = svirsh.main(["--connect", uri, "list", "--all"])
    err = capsys.readouterr().err
    assert rc == EXIT_DENIED, err
    assert "--connect" in err and "root" in err
    assert not marker.exists()  # libvirt's ext transport would have run it as root


def test_sudo_user_cannot_choose_the_configuration(as_sudo_alice, svt_env, tmp_path, capsys):
    conf = conf_file(svt_env, tmp_path)  # root-owned and valid: only the choice is wrong
    rc = svirsh.main(["--config", str(conf), "--json", "list", "--all"])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_POLICY, err
    assert "only root may choose another configuration file" in err
    assert not Path(svt_env.audit_log).exists()


def test_plain_root_still_chooses_config_and_uri(svt_env, tmp_path, capsys, monkeypatch):
    for var in ("SUDO_UID", "SUDO_GID", "SUDO_USER"):
        monkeypatch.delenv(var, raising=False)
    conf = conf_file(svt_env, tmp_path)
    rc = svirsh.main(["--config", str(conf), "--connect", svt_env.uri, "--json", "list", "--all"])
    out = capsys.readouterr().out
    assert rc == 0
    assert len(json.loads(out)["domains"]) == 5


# -- svirt-admin through sudo ---------------------------------------------------------------
EXAMPLE = Path(policy.examples()["example.client_v1"])


@pytest.fixture
def readable_example():
    """The example policy where the sudo user can read it (the work tree may be 0700, as in
    CI's clone): the tests below are about what root writes or reads for her, not this file."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="svt-example."))
    d.chmod(0o755)
    copy = d / EXAMPLE.name
    shutil.copy(EXAMPLE, copy)
    copy.chmod(0o644)
    yield copy
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def root_only(tmp_path):
    """A directory only root may enter, holding a secret only root may read."""
    d = tmp_path / "root-only"
    d.mkdir(mode=0o700)
    secret = write_root_file(d / "secret", "root:$6$not-for-alice:19000::::::\n", 0o600)
    return d, secret


def test_sudo_admin_cannot_write_files_as_root(as_sudo_alice, root_only, readable_example, capsys):
    d, _secret = root_only
    for argv in (
        ["policy", "compile", str(readable_example), "--map", str(d / "map"), "-q"],
        ["policy", "compile", str(readable_example), "--binary", str(d / "bin"), "-q"],
    ):
        rc = admin.main(argv)
        err = capsys.readouterr().err
        assert rc == EXIT_FAILED, err
        assert "cannot write" in err and "Permission denied" in err
    assert sorted(p.name for p in d.iterdir()) == ["secret"]


def test_sudo_admin_cannot_read_files_as_root(as_sudo_alice, root_only, readable_example, capsys):
    _d, secret = root_only
    for argv in (
        ["policy", "compile", str(secret)],
        ["policy", "diff", str(secret), str(readable_example)],
        ["policy", "load", str(secret)],
        ["validate", "--policy", str(secret)],
        ["audit", "show", "--log", str(secret)],
    ):
        rc = admin.main(argv)
        cap = capsys.readouterr()
        # validate: a policy file that cannot be read is a bad policy (4, issue 19)
        assert rc == (EXIT_BAD_POLICY if argv[0] == "validate" else EXIT_FAILED), (argv, cap.err)
        assert "not-for-alice" not in cap.out + cap.err, argv
        assert "Permission denied" in cap.err, (argv, cap.err)


def test_sudo_admin_cannot_choose_the_configuration(as_sudo_alice, svt_env, tmp_path, capsys):
    conf = conf_file(svt_env, tmp_path)
    rc = admin.main(["--config", str(conf), "policy", "show"])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_POLICY, err
    assert "only root may choose another configuration file" in err


def test_root_admin_still_reads_and_writes_where_it_says(root_only, tmp_path, capsys, monkeypatch):
    for var in ("SUDO_UID", "SUDO_GID", "SUDO_USER"):
        monkeypatch.delenv(var, raising=False)
    d, _secret = root_only
    assert admin.main(["policy", "compile", str(EXAMPLE), "--map", str(d / "map"), "-q"]) == 0
    assert (d / "map").read_text().startswith("POLICYREFERENCENAME")


def test_sudo_admin_needs_the_right_role_for_audit_and_review(
    as_sudo_alice, svt_env, tmp_path, monkeypatch, capsys
):
    """Delegated auditors: audit-read lets svt-alice read the log through sudo; without
    rbac-review or audit-verify she is refused, and each decision is itself audited."""
    import secured_virt.config as config_mod

    ua = write_root_file(
        tmp_path / "ua2.xml",
        "<UserConfiguration><User name='svt-alice'>"
        "<UserRole role='Auditor'/></User></UserConfiguration>",
    )
    pa = write_root_file(
        tmp_path / "pa2.xml",
        "<RolePolicyDefinition><Role name='Auditor'>"
        "<ManageVM type='individual'><VM name='Domain-0'/></ManageVM>"
        "<ControlOperation><Accept><operation name='audit-read'/></Accept>"
        "</ControlOperation></Role></RolePolicyDefinition>",
    )
    conf = write_root_file(
        tmp_path / "sudo.conf",
        (
            f"[secured-virt]\nua = {ua}\npa = {pa}\naudit_log = {svt_env.audit_log}\n"
            "audit_syslog = no\n"
        ),
    )
    monkeypatch.setattr(config_mod, "CONFIG_PATH", str(conf))
    assert admin.main(["audit", "show"]) == 0
    assert admin.main(["audit", "verify"]) == EXIT_DENIED
    assert admin.main(["check", "svt-alice", "start", "x"]) == EXIT_DENIED
    err = capsys.readouterr().err
    assert "'audit-verify'" in err and "'rbac-review'" in err
    recs = [json.loads(x) for x in Path(svt_env.audit_log).read_text().splitlines()]
    ops = [(r["op"], r["verdict"]) for r in recs if r["type"] == "decision"]
    assert ops == [("audit-read", "allowed"), ("audit-verify", "denied"), ("rbac-review", "denied")]
