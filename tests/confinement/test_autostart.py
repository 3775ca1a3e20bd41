"""Autostart through the gate (secured_virt/service/autostart.py).

The attack it closes: libvirt's autostart flag starts a domain when the host boots, with no
RBAC, no Chinese Wall against what already runs, no realm quota.  A tenant allowed to mark their
VM autostart got, at the next reboot, their VM running beside a competitor's — which no start of
theirs would have been allowed.  Now ``autostart`` records a wish in root's state, and svirtd's
first start after boot starts each wished VM as the user who marked it, through the gate.

Real libvirt test driver, the demo policy (AliceCorp and BobCorp in one conflict set), real
users svt-alice and svt-bob (their passwd entries are what the boot pass looks up).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import (
    OPS,
    ROOT,
    acm_service,
    audit_records,
    host_config,
    label_vm,
    roles_pa,
    run,
    write_root_file,
)

from secured_virt.access.identity import Identity
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK
from secured_virt.service import Service
from secured_virt.service.autostart import (
    AutostartError,
    AutostartWishes,
    first_after_boot,
    marker_path,
    start_wished,
)

ROLES = {"svt-alice": ("alice-web", "alice-db"), "svt-bob": ("bob-build",)}


def ua_xml(users=ROLES) -> str:
    body = "".join(f'<User name="{u}"><UserRole role="R-{u}"/></User>' for u in users)
    return f"<UserConfiguration>{body}</UserConfiguration>"


def pa_xml(users=ROLES) -> str:
    return roles_pa({f"R-{u}": vms for u, vms in users.items()}, (*OPS, "autostart"))


def who(pw) -> Identity:
    return Identity(
        uid=pw.pw_uid, gid=pw.pw_gid, user=pw.pw_name, groups=(pw.pw_gid,), via="svirtd"
    )


@pytest.fixture
def host(tmp_path, test_users):
    cfg = host_config(tmp_path, pa=pa_xml())
    write_root_file(Path(cfg.ua), ua_xml())
    svc = acm_service(cfg)
    label_vm(svc, "alice-web", "dom_AliceCorp")
    label_vm(svc, "bob-build", "dom_BobCorp")
    return svc, test_users["svt-alice"], test_users["svt-bob"]


def booted(svc) -> Service:
    """The service of a svirtd started after a reboot: a new one on the same host state (the
    test driver's domains are those of this process's connection, so the connection is kept)."""
    return Service.from_config(svc.config, backend=svc.backend)


def uuid_of(svc, name: str) -> str:
    return svc.backend.lookup(name).uuid


def test_autostart_records_a_wish_and_never_sets_libvirts_flag(host):
    svc, alice, _bob = host
    r = run(svc, who(alice), "autostart", domain="alice-web")
    assert r.status == EXIT_OK, r.message
    assert r.data["message"] == "Domain 'alice-web' marked as autostarted"
    assert svc.backend.get_autostart("alice-web") is False  # libvirt would start it unchecked
    wishes = svc.autostart.load()
    assert wishes[uuid_of(svc, "alice-web")]["user"] == "svt-alice"
    st = os.lstat(svc.autostart.path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    # shown as autostarting, as virsh shows libvirt's flag
    assert run(svc, who(alice), "dominfo", domain="alice-web").data["autostart"] is True
    listed = run(svc, ROOT, "list", all=True, autostart=True).data["domains"]
    assert [d["name"] for d in listed] == ["alice-web"]
    not_listed = run(svc, ROOT, "list", all=True, no_autostart=True).data["domains"]
    assert "alice-web" not in {d["name"] for d in not_listed}
    rows = {d["name"]: d for d in run(svc, ROOT, "list", all=True).data["domains"]}
    assert rows["alice-web"]["autostart"] is True and rows["alice-db"]["autostart"] is False


def test_disable_forgets_the_wish_and_clears_libvirts_flag(host):
    svc, alice, _bob = host
    assert run(svc, who(alice), "autostart", domain="alice-web").ok
    svc.backend.set_autostart("alice-web", True)  # root's, with virsh, outside secured-virt
    r = run(svc, who(alice), "autostart", domain="alice-web", disable=True)
    assert r.status == EXIT_OK, r.message
    assert svc.autostart.load() == {}
    assert svc.backend.get_autostart("alice-web") is False
    assert run(svc, ROOT, "dominfo", domain="alice-web").data["autostart"] is False


def test_nobody_marks_a_vm_they_may_not_manage(host):
    svc, _alice, bob = host
    r = run(svc, who(bob), "autostart", domain="alice-web")
    assert r.status == EXIT_DENIED
    assert svc.autostart.load() == {}


def test_root_acting_as_a_user_marks_it_for_that_user(host):
    svc, _alice, _bob = host
    as_alice = Identity(
        uid=0, gid=0, user="root", groups=(0,), via="direct", requested_as="svt-alice"
    )
    assert run(svc, as_alice, "autostart", domain="alice-db").ok
    assert svc.autostart.load()[uuid_of(svc, "alice-db")]["user"] == "svt-alice"


def test_at_boot_the_chinese_wall_decides_as_for_any_start(host):
    """Both competitors marked their VMs: at boot the first one (by name) starts, the other is
    refused by the Chinese Wall and the refusal is audited as svt-bob's, via autostart."""
    svc, alice, bob = host
    assert run(svc, who(alice), "autostart", domain="alice-web").ok
    assert run(svc, who(bob), "autostart", domain="bob-build").ok
    after = booted(svc)
    got = {vm: (user, reply) for vm, user, reply in start_wished(after, tries=1)}
    assert got["alice-web"][1].status == EXIT_OK, got["alice-web"][1].message
    assert got["bob-build"][0] == "svt-bob"
    assert got["bob-build"][1].status == EXIT_DENIED
    assert svc.backend.lookup("alice-web").active
    assert not svc.backend.lookup("bob-build").active
    starts = [
        r for r in audit_records(svc.config) if r.get("op") == "start" and r["type"] == "decision"
    ]
    assert [(r["user"], r["via"], r["verdict"], r.get("check")) for r in starts[-2:]] == [
        ("svt-alice", "autostart", "allowed", "rbac"),
        ("svt-bob", "autostart", "denied", "acm"),
    ]


def test_at_boot_the_user_needs_the_right_they_have_then(host):
    """svt-alice marked alice-db, then lost her role: the boot pass is refused, not run as
    whoever she was when she asked."""
    svc, alice, _bob = host
    assert run(svc, who(alice), "autostart", domain="alice-db").ok
    write_root_file(Path(svc.config.ua), ua_xml({"svt-bob": ROLES["svt-bob"]}))
    got = start_wished(booted(svc), tries=1)
    assert [(vm, user) for vm, user, _r in got] == [("alice-db", "svt-alice")]
    assert got[0][2].status == EXIT_DENIED
    assert not svc.backend.lookup("alice-db").active


def test_at_boot_only_the_vm_that_was_marked_starts(host):
    """alice-db was marked, then undefined and a new VM defined under its name: the wish was
    for the old UUID, so nothing starts and the wish is dropped."""
    svc, alice, _bob = host
    assert run(svc, who(alice), "autostart", domain="alice-db").ok
    old = uuid_of(svc, "alice-db")
    xml = run(svc, ROOT, "dumpxml", domain="alice-db", inactive=True).data["xml"]
    assert run(svc, ROOT, "undefine", domain="alice-db").ok
    xml = re.sub(r"<uuid>[^<]*</uuid>", "<uuid>0d8f4f4e-1f1e-4c4e-8e8e-5a5a5a5a5a5a</uuid>", xml)
    assert run(svc, ROOT, "define", xml=xml, file="new.xml").ok
    got = start_wished(booted(svc), tries=1)
    assert got == [("alice-db", "svt-alice", "not defined")]
    assert not svc.backend.lookup("alice-db").active
    assert old not in svc.autostart.load()


def test_a_start_that_needs_the_users_password_is_refused_at_boot(host):
    """Nobody is at a terminal when the host boots: a start that auth_operations makes ask for
    the user's password is refused (check pam) and audited, never waved through."""
    svc, alice, _bob = host
    assert run(svc, who(alice), "autostart", domain="alice-web").ok
    cfg = dataclasses.replace(svc.config, auth_operations=("start",))
    got = start_wished(Service.from_config(cfg, backend=svc.backend), tries=1)
    assert [(vm, r.status, r.check) for vm, _u, r in got] == [("alice-web", EXIT_DENIED, "pam")]
    assert not svc.backend.lookup("alice-web").active


def test_a_running_vm_is_left_alone_at_boot(host):
    svc, alice, _bob = host
    assert run(svc, who(alice), "autostart", domain="alice-web").ok
    assert run(svc, ROOT, "start", domain="alice-web").ok
    assert start_wished(booted(svc), tries=1) == [("alice-web", "svt-alice", "already running")]


def test_a_wishes_file_others_could_write_is_refused(host):
    svc, alice, _bob = host
    assert run(svc, who(alice), "autostart", domain="alice-web").ok
    os.chmod(svc.autostart.path, 0o622)
    with pytest.raises(AutostartError, match="writable by nobody else"):
        svc.autostart.load()
    assert start_wished(booted(svc), tries=1) == []  # nothing starts on a file not trusted
    assert not svc.backend.lookup("alice-web").active
    r = run(svc, who(alice), "autostart", domain="alice-db")
    assert r.status == EXIT_FAILED and svc.autostart.path in r.message


def test_a_damaged_wishes_file_names_itself_and_loses_nothing(host):
    svc, alice, _bob = host
    path = Path(svc.autostart.path)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_root_file(path, '{"x": [1]}', mode=0o600)
    r = run(svc, who(alice), "autostart", domain="alice-web")
    assert r.status == EXIT_FAILED
    assert str(path) in r.message and "damaged" in r.message
    assert path.read_text() == '{"x": [1]}'  # left as it was, for root to look at


def test_the_boot_marker_is_written_once(tmp_path):
    marker = marker_path(str(tmp_path / "svirtd.sock"))
    assert marker == str(tmp_path / "autostarted")
    assert first_after_boot(marker) is True
    assert first_after_boot(marker) is False  # svirtd restarted: nothing autostarts again
    # a run directory it cannot write: rather no autostart than one at every restart
    assert first_after_boot(str(tmp_path / "missing" / "autostarted")) is False


def test_wished_follows_the_file(tmp_path):
    w = AutostartWishes(str(tmp_path / "state"))
    assert w.wished() == frozenset()
    w.record("u-1", "vm1", "svt-alice")
    assert w.wished() == {"u-1"}
    w.record("u-2", "vm2", "root")
    assert w.wished() == {"u-1", "u-2"}
    assert w.forget("u-1") is True and w.forget("u-1") is False
    assert w.wished() == {"u-2"}
    assert json.loads(Path(w.path).read_text())["u-2"]["name"] == "vm2"
