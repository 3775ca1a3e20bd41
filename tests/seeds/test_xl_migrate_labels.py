"""Seed 001 on xl: a label travels with ``xl migrate`` as (label name, policy name) and the
destination decides under its own policy before xl there reads the stream.

Two hosts, as in test_xl_labels_travel: xl is mocked (there is no Xen), everything else is
real.  The source's xl is the in-process mock; its ``migrate -s ""`` runs the transport our
backend built through a real ``sh -c``, with a local stand-in for ssh (drops the host, runs
the remote command by a shell, as sshd does); on the "destination" that runs the real
receiver (``python -m secured_virt.cli.xl_receive``) as a real process with the destination's
own configuration, policy, audit log and xl: a program (xl_migrate_fake.py) sharing its
running set with the destination's in-process mock.  Both ends speak xl's migration protocol
(tools/xl/xl_migrate.c): the destination's xl receives the domain as ``NAME--incoming`` and
renames it to NAME after the source's permission to go, and the tests look at its label
while it arrives, after it arrived, and after each way a migration fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secured_virt.backends.xl_backend import XlBackend
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED

from . import xl_migrate_fake as xlproc
from .conftest import ROOT, acm_service, run
from .xlhosts import CLIENT, XL_DATA, HostXl, renumbered_client

HERE = Path(__file__).resolve().parent
WEB_DISK = "phy:/dev/vg0/web-01"
DISK_LABEL = "res_LogicalDiskPartition2(hda2)"
FAKE_SSH = """#!/bin/sh
# a local stand-in for ssh: options up to "--", then the host, then the remote command,
# which (like sshd) it gives to a shell
while [ "$1" != "--" ]; do shift; done
shift 2
exec /bin/sh -c "$*"
"""


class SharedRunning(dict):
    """A host's running set kept in its state file (shared with xl_migrate_fake.py)."""

    def __init__(self, path: Path) -> None:
        super().__init__(xlproc.load(path)["running"])
        self.path = path

    def _save(self) -> None:
        state = xlproc.load(self.path)
        state["running"] = dict(self)
        state["paused"] = [n for n in state["paused"] if n in self]
        xlproc.save(self.path, state)

    def __setitem__(self, k, v):
        super().__setitem__(k, v)
        self._save()

    def pop(self, *a):
        out = super().pop(*a)
        self._save()
        return out


def failed(argv, err: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(argv, 1, "", err)


class MigratingXl(HostXl):
    """HostXl whose running set lives in a state file (listings answered as the xl program's,
    xl_migrate_fake.answer) and whose ``migrate -s ""`` is xl's sending side (tools/xl
    xl_migrate.c ``migrate_domain``): run the host operand by ``sh -c`` as the transport, wait
    for the receiver's banner (nothing is suspended before it), send the stream (xl's header
    and config, then libxl's stream), read the ready message, rename the domain here to
    ``NAME--migratedaway``, send the permission to go, read the report: on success the domain
    is destroyed here, on the target's failure it gets its name back and resumes.

    ``during()`` runs after all of the stream but its END record is sent (the destination is
    receiving); ``fault`` cuts the migration short as a dying source would: "cut-stream" (the
    stream ends before its END record) or "gone-after-transfer" (both pipes closed after the
    ready message, before the permission to go)."""

    def __init__(self, xl_path: str, state: Path) -> None:
        self.state = state
        self.during = None
        self.fault = None
        super().__init__(xl_path, {})

    @property
    def running(self):
        return SharedRunning(self.state)

    @running.setter
    def running(self, value):
        pass  # the state file, written by the fixture, is the truth

    def __call__(self, argv, **kw):
        key = tuple(argv[1:])
        if key[:1] in (("list",), ("domid",)):
            self.calls.append((list(argv), kw))
            rc, out, err = xlproc.answer(xlproc.load(self.state), list(key))
            return subprocess.CompletedProcess(argv, rc, out, err)
        if key[:4] != ("migrate", "-s", "", "--"):
            return super().__call__(argv, **kw)
        self.calls.append((list(argv), kw))
        name, rune = key[4], key[5]
        proc = subprocess.Popen(
            ["/bin/sh", "-c", rune],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

        def end(*, close_stdout=False) -> str:
            # stdout first: once stdin ends, xl there must find nobody to report to
            for f in (proc.stdout, proc.stdin) if close_stdout else (proc.stdin,):
                with contextlib.suppress(BrokenPipeError):
                    f.close()
            err = proc.stderr.read().decode()
            proc.wait()
            return err

        if proc.stdout.read(len(xlproc.BANNER)) != xlproc.BANNER:
            return failed(
                argv,
                end() + "libxl: error: libxl_utils.c:107:libxl_read_exactly: file/stream truncated "
                "reading banner from migration receiver stream\n"
                f"(command run was: {rune} )\n",
            )
        image = (XL_DATA / "web-01.save").read_bytes()
        (optlen,) = struct.unpack("<I", image[44:48])
        stream = xlproc.libxl_stream(image[48 + optlen :])
        proc.stdin.write(image[: 48 + optlen] + stream[:-8])
        proc.stdin.flush()
        if self.during:
            self.during()
        if self.fault == "cut-stream":
            return failed(argv, end() + "migration sender: libxl_domain_suspend failed\n")
        proc.stdin.write(stream[-8:])
        proc.stdin.flush()
        if proc.stdout.read(len(xlproc.READY)) != xlproc.READY:
            return failed(argv, end() + "Migration failed, resuming at sender.\n")
        if self.fault == "gone-after-transfer":
            return failed(argv, end(close_stdout=True) + "xl: killed\n")
        away = f"{name}--migratedaway"
        self.running[away] = self.running.pop(name)
        proc.stdin.write(xlproc.GO)
        proc.stdin.flush()
        report = proc.stdout.read(len(xlproc.REPORT))
        status = proc.stdout.read(1)
        if report != xlproc.REPORT or len(status) != 1:
            return failed(argv, end() + "** Migration failed during final handshake **\n")
        if status != b"\x00":
            back = proc.stdout.read(len(xlproc.GO))
            err = end()
            if back == xlproc.GO:
                self.running[name] = self.running.pop(away)
            return failed(argv, err + "Migration failed due to problems at target.\n")
        self.running.pop(away)
        return subprocess.CompletedProcess(argv, 0, "", end() + "Migration successful.\n")


@pytest.fixture
def hosts(mocker, tmp_path, svt_env):
    """``make(name, policy_xml, running, configs)`` -> (Service, XlBackend, receiver config):
    one host with its own xl (an executable running xl_migrate_fake.py on its state file),
    /etc/xen, transient dir, ACM state, audit log and secured-virt.conf."""
    by_path: dict[str, MigratingXl] = {}
    mocker.patch(
        "secured_virt.backends.xl_run.subprocess.run",
        side_effect=lambda argv, **kw: by_path[argv[0]](argv, **kw),
    )
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)

    def make(name: str, policy_xml: bytes, running: dict, configs=("web-01",)):
        top = tmp_path / name
        etc = top / "etc-xen"
        etc.mkdir(parents=True)
        for d in (top, etc):
            os.chmod(d, 0o755)
        for c in configs:
            shutil.copy(XL_DATA / "etc-xen" / f"{c}.cfg", etc / f"{c}.cfg")
            os.chmod(etc / f"{c}.cfg", 0o644)
        state = top / "xl-state.json"
        xlproc.save(state, {"running": {"Domain-0": 0}, "paused": []})
        xl = top / "xl"
        xl.write_text(
            f'#!/bin/sh\nexec {sys.executable} {HERE / "xl_migrate_fake.py"} {state} "$@"\n'
        )
        xl.chmod(0o755)
        by_path[str(xl)] = MigratingXl(str(xl), state)
        backend = XlBackend(
            xl_path=str(xl), xl_config_dir=str(etc), xl_transient_dir=str(top / "run")
        )
        backend.migrate_ssh = (str(ssh),)
        acm_dir, log_dir = top / "acm", top / "log"
        log_dir.mkdir(mode=0o700)
        svc = acm_service(
            dataclasses.replace(
                svt_env, backend="xl", audit_log=str(log_dir / "audit.log"), svirt=False
            ),
            acm_dir,
            policy_xml,
            backend,
        )
        r = run(svc, ROOT, "setlabel", domain=WEB_DISK, label=DISK_LABEL, resource=True)
        assert r.ok, r.message
        conf = top / "secured-virt.conf"
        conf.write_text(
            "[secured-virt]\nbackend = xl\nacm = yes\nsvirt = no\naudit_syslog = no\n"
            f"xl_path = {xl}\nxl_config_dir = {etc}\nxl_transient_dir = {top / 'run'}\n"
            f"acm_state_dir = {acm_dir}\naudit_log = {log_dir / 'audit.log'}\n"
            f"ua = {svt_env.ua}\npa = {svt_env.pa}\n"
        )
        conf.chmod(0o644)
        xlproc.save(state, {"running": running, "paused": []})  # what runs there from now on
        return svc, backend, conf

    make.fakes = by_path
    return make


def receive_at(source: XlBackend, conf: Path) -> None:
    """Point the source's transport at the receiver of the host configured by conf."""
    source.migrate_receiver = (
        sys.executable,
        *("-m", "secured_virt.cli.xl_receive", "--config", str(conf)),
    )


def audit(svc) -> list[dict]:
    return [json.loads(ln) for ln in Path(svc.config.audit_log).read_text().splitlines()]


@pytest.fixture
def source(hosts, svt_env):
    svc, backend, _conf = hosts("host1", CLIENT.read_bytes(), {"Domain-0": 0})
    hosts.fakes[backend.xl_path].running["web-01"] = 3  # started (xl create) under that policy
    return svc, backend


def peers(svc, *pairs):
    """List destinations in acm_peers (the source's static check of their policy)."""
    svc.config = dataclasses.replace(svc.config, acm_peers=tuple(pairs))
    svc.acm.config = svc.config


def test_the_label_arrives_as_the_destinations_ssidref_of_that_name(hosts, source):
    src, xl1 = source
    dst, xl2, conf2 = hosts("host2", renumbered_client(), {"Domain-0": 0}, configs=())
    peers(src, ("xen+ssh://host2/", str(Path(dst.config.acm_state_dir))))
    receive_at(xl1, conf2)
    first = src.acm.active.ssidref("dom_Fun")
    r = run(src, ROOT, "migrate", domain="web-01", desturi="xen+ssh://host2/")
    assert r.ok, r.message
    # gone from host 1, running on host 2 with its label, under host 2's number for it
    assert "web-01" not in SharedRunning(Path(xl1.xl_path).parent / "xl-state.json")
    sec = run(dst, ROOT, "dominfo", domain="web-01").data
    assert sec["owner"] == "alice"
    assert sec["security"]["label"] == "dom_Fun"
    assert sec["security"]["policy"] == "example.client_v1"
    assert sec["security"]["ssidref"] == dst.acm.active.ssidref("dom_Fun") != first
    # what the source ran: xl migrate with an empty -s and our transport, never ssh ... xl
    argv = next(a for a in hosts.fakes[xl1.xl_path].argvs if a[0] == "migrate")
    assert argv[:5] == ["migrate", "-s", "", "--", "web-01"]
    assert "--label=dom_Fun" in argv[5] and "--label-policy=example.client_v1" in argv[5]
    assert "xl migrate-receive" not in argv[5]
    # the audit on both ends: the source's decision and outcome, the destination's own
    mine = [a for a in audit(src) if a.get("op") == "migrate"]
    assert [a["type"] for a in mine] == ["decision", "outcome"]
    assert mine[0]["verdict"] == "allowed" and mine[1]["outcome"] == "ok"
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert [a["type"] for a in theirs] == ["decision", "outcome"]
    assert theirs[0]["verdict"] == "allowed" and theirs[0]["via"] == "ssh"
    assert theirs[0]["vm"] == "web-01" and "ACM:example.client_v1:dom_Fun" in theirs[0]["rule"]
    assert f"{dst.acm.active.ssidref('dom_Fun'):#x}" in theirs[0]["rule"]
    assert theirs[1]["outcome"] == "ok"
    # its label lives in a transient config there; the incoming one is gone
    run2 = Path(xl2.transient_dir)
    assert "label=dom_Fun" in (run2 / "web-01.cfg").read_text()
    assert not (run2 / "web-01--incoming.cfg").exists()


def test_a_destination_under_a_policy_of_another_name_refuses(hosts, source):
    src, xl1 = source
    other = CLIENT.read_bytes().replace(b"example.client_v1", b"example.other")
    dst, xl3, conf3 = hosts("host3", other, {"Domain-0": 0}, configs=())
    receive_at(xl1, conf3)
    # the source's own check (acm_peers lists it) already refuses ...
    peers(src, ("xen+ssh://host3/", str(Path(dst.config.acm_state_dir))))
    r = run(src, ROOT, "migrate", domain="web-01", desturi="xen+ssh://host3/")
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    # ... and the destination refuses by itself when the source's copy of its state is stale
    stale = Path(src.config.acm_state_dir).parent / "host3-stale"
    shutil.copytree(src.config.acm_state_dir, stale)
    peers(src, ("xen+ssh://host3/", str(stale)))
    r = run(src, ROOT, "migrate", domain="web-01", desturi="xen+ssh://host3/")
    assert r.status == EXIT_DENIED, r.message
    assert "host3 refused domain 'web-01'" in r.message
    assert "runs sHype/ACM policy 'example.other'" in r.message
    assert "keeps running here" in r.message
    running1 = SharedRunning(Path(xl1.xl_path).parent / "xl-state.json")
    assert running1["web-01"] == 3  # still running on the source
    assert "web-01" not in SharedRunning(Path(xl3.xl_path).parent / "xl-state.json")
    calls = (Path(xl3.xl_path).parent / "xl-state.calls").read_text()
    assert '"migrate-receive"' not in calls  # xl there never saw the stream
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert [(a["type"], a["verdict"], a["check"]) for a in theirs] == [
        ("decision", "denied", "acm")
    ]
    assert not list(Path(xl3.transient_dir).glob("web-01*"))
    mine = [a for a in audit(src) if a.get("op") == "migrate"]
    assert mine[-1]["type"] == "outcome" and "example.other" in mine[-1]["outcome"]


def test_a_label_the_destinations_chinese_wall_conflicts_with_refuses(hosts, source):
    """db.prod runs on host 4 as dom_HomeBanking (cw_Sensitive); dom_Fun is cw_Distrusted,
    in the same conflict set: only the destination can know that."""
    src, xl1 = source
    dst, xl4, conf4 = hosts("host4", CLIENT.read_bytes(), {"Domain-0": 0}, configs=("db.prod",))
    cfg = Path(xl4.config_dir) / "db.prod.cfg"
    cfg.write_text(cfg.read_text().replace("dom_Payroll", "dom_HomeBanking"))
    SharedRunning(Path(xl4.xl_path).parent / "xl-state.json")["db.prod"] = 5
    assert dst.acm.vm_label("db.prod") == "ACM:example.client_v1:dom_HomeBanking"
    peers(src, ("xen+ssh://host4/", str(Path(dst.config.acm_state_dir))))
    receive_at(xl1, conf4)
    r = run(src, ROOT, "migrate", domain="web-01", desturi="xen+ssh://host4/")
    assert r.status == EXIT_DENIED, r.message
    assert "host4 refused domain 'web-01'" in r.message and "Protection1" in r.message
    assert SharedRunning(Path(xl1.xl_path).parent / "xl-state.json")["web-01"] == 3
    assert "web-01" not in SharedRunning(Path(xl4.xl_path).parent / "xl-state.json")
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert theirs[-1]["verdict"] == "denied" and "Protection1" in theirs[-1]["rule"]


def test_a_destination_without_the_receiver_fails_closed(hosts, source):
    src, xl1 = source
    dst, xl5, _conf5 = hosts("host5", CLIENT.read_bytes(), {"Domain-0": 0}, configs=())
    peers(src, ("xen+ssh://host5/", str(Path(dst.config.acm_state_dir))))
    xl1.migrate_receiver = ("/nonexistent/sbin/svirt-xl-receive",)
    r = run(src, ROOT, "migrate", domain="web-01", desturi="xen+ssh://host5/")
    assert r.status == EXIT_FAILED, r.message
    assert "did not answer as secured-virt's receiver" in r.message
    assert "/nonexistent/sbin/svirt-xl-receive installed" in r.message
    assert SharedRunning(Path(xl1.xl_path).parent / "xl-state.json")["web-01"] == 3
    assert not (Path(xl5.xl_path).parent / "xl-state.calls").exists()


def test_an_unlisted_destination_is_still_refused_before_anything_runs(hosts, source):
    src, xl1 = source
    r = run(src, ROOT, "migrate", domain="web-01", desturi="xen+ssh://host9/")
    assert r.status == EXIT_DENIED and "acm_peers" in r.message
    assert not [a for a in hosts.fakes[xl1.xl_path].argvs if a[0] == "migrate"]


# -- xl's NAME--incoming: the label under both names, and only while a domain has it ------------
INCOMING = "web-01--incoming"


def wait_for(what: str, ready) -> None:
    """Wait for another process's step (a guard against a hang, not a measurement)."""
    deadline = time.monotonic() + 120
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def banking(hosts, source):
    """A destination where db.prod (dom_HomeBanking: a Chinese Wall conflict with web-01's
    dom_Fun) is defined but not running, so that starting it there asks the Chinese Wall
    about whatever runs there labelled dom_Fun; the source sends web-01 to its receiver."""
    src, xl1 = source
    dst, xl2, conf2 = hosts("host6", CLIENT.read_bytes(), {"Domain-0": 0}, configs=("db.prod",))
    cfg = Path(xl2.config_dir) / "db.prod.cfg"
    cfg.write_text(cfg.read_text().replace("dom_Payroll", "dom_HomeBanking"))
    peers(src, ("xen+ssh://host6/", str(Path(dst.config.acm_state_dir))))
    receive_at(xl1, conf2)
    sender = hosts.fakes[xl1.xl_path]
    return src, dst, xl2, sender


def state_of(backend: XlBackend) -> dict:
    return xlproc.load(Path(backend.xl_path).parent / "xl-state.json")


def migrate(src):
    return run(src, ROOT, "migrate", domain="web-01", desturi="xen+ssh://host6/")


def labelled(dst, name: str) -> str | None:
    r = run(dst, ROOT, "dominfo", domain=name)
    assert r.ok, r.message
    return r.data["security"]["label"]


def conflicts_with_fun(dst) -> None:
    """Starting db.prod there is refused by the Chinese Wall: a dom_Fun domain runs there."""
    r = run(dst, ROOT, "start", domain="db.prod")
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert "Protection1" in r.message


def test_while_it_arrives_the_domain_runs_as_name_incoming_with_its_label(banking):
    src, dst, xl2, sender = banking
    seen = {}

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        seen["listed"] = {d["name"]: d for d in run(dst, ROOT, "list", all=True).data["domains"]}
        seen["label"] = labelled(dst, INCOMING)
        seen["ssidref"] = run(dst, ROOT, "dominfo", domain=INCOMING).data["security"]["ssidref"]
        conflicts_with_fun(dst)  # the Chinese Wall counts it, with its label, from now on
        seen["web-01"] = run(dst, ROOT, "dominfo", domain="web-01")

    sender.during = during
    r = migrate(src)
    assert r.ok, r.message
    # while it arrived: xl's name, paused, with the label; nothing ran as web-01 yet
    assert seen["listed"][INCOMING]["state"] == "paused"
    assert "web-01" not in seen["listed"]
    assert seen["label"] == "dom_Fun"
    assert seen["ssidref"] == dst.acm.active.ssidref("dom_Fun")
    assert not seen["web-01"].ok
    # after: renamed by xl; web-01 has the label, nothing is left under the incoming name
    assert state_of(xl2)["running"]["web-01"] == 3
    assert INCOMING not in state_of(xl2)["running"] and not state_of(xl2)["paused"]
    assert labelled(dst, "web-01") == "dom_Fun"
    assert not run(dst, ROOT, "dominfo", domain=INCOMING).ok
    assert not (Path(xl2.transient_dir) / f"{INCOMING}.cfg").exists()
    assert INCOMING not in dst.acm.labels.items("vm")
    conflicts_with_fun(dst)  # now because of web-01
    running1 = state_of(sender)["running"]
    assert "web-01" not in running1 and "web-01--migratedaway" not in running1
    calls = (Path(xl2.xl_path).parent / "xl-state.calls").read_text()
    assert '"migrate-receive"' in calls


def test_a_stream_cut_short_leaves_neither_domain_nor_label(banking):
    src, dst, xl2, sender = banking
    seen = {}

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        seen["label"] = labelled(dst, INCOMING)

    sender.during, sender.fault = during, "cut-stream"
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert seen["label"] == "dom_Fun"  # it did run here, labelled, while the stream lasted
    assert state_of(sender)["running"]["web-01"] == 3  # still running on the source
    # libxl destroyed the half-received domain; its label went with it
    assert set(state_of(xl2)["running"]) == {"Domain-0"}
    assert not list(Path(xl2.transient_dir).glob("web-01*"))
    assert not run(dst, ROOT, "dominfo", domain=INCOMING).ok
    assert not [k for k in dst.acm.labels.items("vm") if k.startswith("web-01")]
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert [a["type"] for a in theirs] == ["decision", "outcome"]
    assert theirs[1]["outcome"].startswith("error:") and "status 1" in theirs[1]["outcome"]


def test_a_domain_xl_leaves_behind_as_name_incoming_keeps_its_label(banking):
    """The source's xl dies after the transfer, before its permission to go: xl on the
    destination cannot even report back and exits leaving NAME--incoming, paused, behind.  A
    domain that runs keeps its label (or the Chinese Wall and STE would take it for
    unlabelled) until it is destroyed."""
    src, dst, xl2, sender = banking
    sender.fault = "gone-after-transfer"
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert state_of(sender)["running"]["web-01"] == 3
    assert state_of(xl2)["running"][INCOMING] == 3 and state_of(xl2)["paused"] == [INCOMING]
    assert labelled(dst, INCOMING) == "dom_Fun"
    conflicts_with_fun(dst)
    assert not (Path(xl2.transient_dir) / "web-01.cfg").exists()  # no web-01 here
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert theirs[-1]["type"] == "outcome" and INCOMING in theirs[-1]["outcome"]
    # destroyed, nothing of it is left
    d = run(dst, ROOT, "destroy", domain=INCOMING)
    assert d.ok, d.message
    assert not list(Path(xl2.transient_dir).glob("web-01*"))
    assert not [k for k in dst.acm.labels.items("vm") if k.startswith("web-01")]


def test_a_rename_xl_refuses_leaves_the_label_on_no_other_domain(banking):
    """Meanwhile someone started another web-01 on the destination (plain xl, outside
    secured-virt): xl there cannot rename NAME--incoming, destroys its copy and exits 0, and
    the source resumes.  That other web-01 must not get the arriving domain's label, and the
    destination must not call the migration received."""
    src, dst, xl2, sender = banking

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        with dst.acm.exclusive():  # once the receiver saw web-01--incoming and let go
            SharedRunning(Path(xl2.xl_path).parent / "xl-state.json")["web-01"] = 7

    sender.during = during
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert state_of(sender)["running"]["web-01"] == 3  # resumed on the source
    assert state_of(xl2)["running"] == {"Domain-0": 0, "web-01": 7}
    assert labelled(dst, "web-01") == "__UNLABELED__"
    assert not list(Path(xl2.transient_dir).glob("web-01*"))
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert theirs[-1]["type"] == "outcome" and theirs[-1]["outcome"].startswith("error:")
