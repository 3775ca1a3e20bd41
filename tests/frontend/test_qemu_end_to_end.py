"""Real guests: libvirtd + QEMU (TCG), svirsh as root acting for users, and svirtd serving
real other uids.  A 32 MiB guest with no disk is started, suspended, resumed and destroyed by
an authorized user; an unauthorized one is refused and does not even see it; the audit log
says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from secured_virt.access import audit
from secured_virt.backends.factory import open_backend
from secured_virt.testing.libvirtd import qemu_processes, remove_guests, tiny_guest_xml

from .conftest import REPO, write_root_file

pytestmark = pytest.mark.integration
PY = sys.executable


@pytest.fixture
def host(libvirtd, tmp_path, test_users):
    """qemu:///system with two fresh guests (one each for svt-alice and svt-bob), UA/PA, a
    private audit log, and a config file."""
    tag = uuid.uuid4().hex[:6]
    a_vm, b_vm = f"svt-a-{tag}", f"svt-b-{tag}"
    be = open_backend("libvirt", "qemu:///system")
    for vm in (a_vm, b_vm):
        be.define(tiny_guest_xml(vm))
    os.chmod(tmp_path, 0o755)
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o755)
    ops = "".join(
        f"<operation name='{o}'/>"
        for o in ("list", "dominfo", "domstate", "start", "suspend", "resume", "destroy")
    )
    write_root_file(
        etc / "ua.xml",
        "<UserConfiguration>"
        "<User name='svt-alice'><UserRole role='A'/></User>"
        "<User name='svt-bob'><UserRole role='B'/></User></UserConfiguration>",
    )
    write_root_file(
        etc / "pa.xml",
        "<RolePolicyDefinition>"
        f"<Role name='A'><ManageVM type='individual'><VM name='{a_vm}'/></ManageVM>"
        f"<ControlOperation><Accept>{ops}</Accept></ControlOperation></Role>"
        f"<Role name='B'><ManageVM type='individual'><VM name='{b_vm}'/></ManageVM>"
        f"<ControlOperation><Accept>{ops}</Accept></ControlOperation></Role>"
        "</RolePolicyDefinition>",
    )
    log = tmp_path / "log"
    log.mkdir(mode=0o700)
    # the socket must be reachable by the test users: not under pytest's 0700 tmp root
    run = Path(tempfile.mkdtemp(prefix="svt-run."))
    os.chmod(run, 0o755)
    conf = write_root_file(
        tmp_path / "svirt.conf",
        (
            "[secured-virt]\nuri = qemu:///system\n"
            f"ua = {etc / 'ua.xml'}\npa = {etc / 'pa.xml'}\n"
            f"audit_log = {log / 'audit.log'}\naudit_syslog = no\n"
            f"socket = {run / 'svirtd.sock'}\nauth_dir = {tmp_path / 'ts'}\n"
        ),
    )
    h = {
        "a": a_vm,
        "b": b_vm,
        "conf": conf,
        "log": log / "audit.log",
        "sock": run / "svirtd.sock",
        "backend": be,
    }
    yield h
    remove_guests(be, [a_vm, b_vm])
    be.close()
    shutil.rmtree(run, ignore_errors=True)


def svirsh_root(conf, *args):
    return subprocess.run(
        [PY, "-I", str(REPO / "bin" / "svirsh"), "--config", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def records(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_direct_mode_as_user_drives_a_real_guest(host):
    a, _b, conf = host["a"], host["b"], host["conf"]
    r = svirsh_root(conf, "--as", "svt-alice", "start", a)
    assert r.returncode == 0, r.stderr
    assert qemu_processes(a), "a qemu process should run the guest"
    r = svirsh_root(conf, "--as", "svt-alice", "suspend", a)
    assert r.returncode == 0, r.stderr
    assert svirsh_root(conf, "--as", "svt-alice", "domstate", a).stdout.strip() == "paused"
    assert svirsh_root(conf, "--as", "svt-alice", "resume", a).returncode == 0
    assert svirsh_root(conf, "--as", "svt-alice", "domstate", a).stdout.strip() == "running"
    r = svirsh_root(conf, "--as", "svt-bob", "destroy", a)
    assert r.returncode == 3 and "svt-bob" in r.stderr
    assert qemu_processes(a)
    assert svirsh_root(conf, "--as", "svt-alice", "destroy", a).returncode == 0
    for _ in range(50):
        if not qemu_processes(a):
            break
        time.sleep(0.1)
    assert not qemu_processes(a)
    recs = [x for x in records(host["log"]) if x["type"] == "decision"]
    assert [(x["acting_as"], x["op"], x["verdict"]) for x in recs] == [
        ("svt-alice", "start", "allowed"),
        ("svt-alice", "suspend", "allowed"),
        ("svt-alice", "domstate", "allowed"),
        ("svt-alice", "resume", "allowed"),
        ("svt-alice", "domstate", "allowed"),
        ("svt-bob", "destroy", "denied"),
        ("svt-alice", "destroy", "allowed"),
    ]
    assert all(x["uid"] == 0 for x in recs)
    assert audit.verify(str(host["log"])).ok


def test_svirtd_serves_real_uids_on_real_guests(host, test_users, readable_src, as_user):
    a, b = host["a"], host["b"]
    daemon = subprocess.Popen(
        [
            PY,
            "-I",
            str(REPO / "bin" / "svirtd"),
            "--config",
            str(host["conf"]),
            "--log-level",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if host["sock"].exists():
                break
            time.sleep(0.05)
        alice, bob = test_users["svt-alice"], test_users["svt-bob"]

        def svirsh(user, *args):
            return as_user(
                user,
                [
                    PY,
                    "-I",
                    str(readable_src / "bin" / "svirsh"),
                    "--socket",
                    str(host["sock"]),
                    *args,
                ],
                timeout=120,
            )

        r = svirsh(alice, "start", a)
        assert r.returncode == 0, r.stderr
        assert qemu_processes(a)
        r = svirsh(alice, "start", b)
        assert r.returncode == 3 and "refused by the rbac check" in r.stderr
        assert not qemu_processes(b)
        listing = svirsh(alice, "list", "--all", "--name").stdout.split()
        assert a in listing and b not in listing
        assert b in svirsh(bob, "list", "--all", "--name").stdout.split()
        assert svirsh(alice, "destroy", a).returncode == 0
    finally:
        daemon.terminate()
        daemon.wait(20)
    recs = [x for x in records(host["log"]) if x["type"] == "decision"]
    starts = [(x["user"], x["vm"], x["verdict"], x["via"]) for x in recs if x["op"] == "start"]
    assert starts == [("svt-alice", a, "allowed", "svirtd"), ("svt-alice", b, "denied", "svirtd")]
    assert audit.verify(str(host["log"])).ok


def test_acm_label_travels_through_a_real_qemu_save_image(host, tmp_path):
    """The label is in the domain's metadata, so QEMU's save image carries it; restore is
    mediated from the image's label before QEMU runs the guest again."""
    import dataclasses

    import policy
    from secured_virt.access.identity import Identity
    from secured_virt.config import load_config
    from secured_virt.requests import Request
    from secured_virt.service import Service

    cfg = dataclasses.replace(
        load_config(str(host["conf"]), caller_uid=0), acm=True, acm_state_dir=str(tmp_path / "acm")
    )
    svc = Service.from_config(cfg)
    xml = (REPO / "etc" / "demo" / "acm-policy.xml").read_bytes()
    assert svc.acm.host.set_policy(xml, policy.XS_INST_LOAD, True).xserr == 0
    root = Identity(uid=0, gid=0, user="root", groups=(0,), via="direct", pid=os.getpid())
    a, b = host["a"], host["b"]

    def run(command, **args):
        return svc.handle(root, Request(command, args))

    assert run("setlabel", domain=a, label="dom_AliceCorp").ok
    assert run("setlabel", domain=b, label="dom_BobCorp").ok
    assert run("start", domain=a).ok
    image = tmp_path / "a.save"
    r = run("save", domain=a, file=str(image))
    assert r.ok, r.message
    assert not qemu_processes(a) and image.stat().st_size > 0
    assert "dom_AliceCorp" in svc.backend.saved_image_xml(str(image))
    assert run("start", domain=b).ok  # a BobCorp guest now runs: the wall is up
    r = run("restore", file=str(image))
    assert r.status == 3 and "Competitors" in r.message
    assert not qemu_processes(a)
    assert run("destroy", domain=b).ok
    r = run("restore", file=str(image))
    assert r.ok, r.message
    assert qemu_processes(a)
    assert run("getlabel", domain=a).data["label"] == "dom_AliceCorp"
    assert run("destroy", domain=a).ok


def test_racing_svirsh_processes_never_start_both_sides_of_a_wall(host, tmp_path):
    """Two separate svirsh processes (each with its own libvirt connection) race to start two
    guests in one Chinese Wall conflict set: the host-wide lock lets exactly one through."""
    import dataclasses

    import policy
    from secured_virt.access.identity import Identity
    from secured_virt.config import load_config
    from secured_virt.requests import Request
    from secured_virt.service import Service

    acm_dir = tmp_path / "acm"
    cfg = dataclasses.replace(
        load_config(str(host["conf"]), caller_uid=0), acm=True, acm_state_dir=str(acm_dir)
    )
    svc = Service.from_config(cfg)
    xml = (REPO / "etc" / "demo" / "acm-policy.xml").read_bytes()
    assert svc.acm.host.set_policy(xml, policy.XS_INST_LOAD | policy.XS_INST_BOOT, True).xserr == 0
    root = Identity(uid=0, gid=0, user="root", groups=(0,), via="direct", pid=os.getpid())
    a, b = host["a"], host["b"]
    assert svc.handle(root, Request("setlabel", {"domain": a, "label": "dom_AliceCorp"})).ok
    assert svc.handle(root, Request("setlabel", {"domain": b, "label": "dom_BobCorp"})).ok
    conf = write_root_file(
        tmp_path / "acm.conf", host["conf"].read_text() + f"acm = yes\nacm_state_dir = {acm_dir}\n"
    )
    argv = [PY, "-I", str(REPO / "bin" / "svirsh"), "--config", str(conf), "start"]
    for _ in range(4):
        procs = [
            subprocess.Popen([*argv, vm], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for vm in (a, b)
        ]
        codes = sorted(p.wait(120) for p in procs)
        running = [vm for vm in (a, b) if svc.backend.lookup(vm).id is not None]
        assert len(running) == 1, running
        assert codes == [0, 3], [p.stderr.read() for p in procs]
        svc.backend.destroy(running[0])
