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


def exists(name: str) -> str:
    return (
        "libxl: error: libxl_domain.c:470:libxl__domain_rename: "
        f'Domain with name "{name}" already exists.\n'
    )


#: xl_migrate.c migrate_domain, failed_badly: the domain stays here as NAME--migratedaway
FAILED_BADLY = (
    "** Migration failed during final handshake **\n"
    "Domain state is now undefined !\n"
    "Please CHECK AT BOTH ENDS for running instances, before renaming and\n"
    " resuming at most one instance.  Two simultaneous instances of the domain\n"
    " would probably result in SEVERE DATA LOSS and it is now your\n"
    " responsibility to avoid that.  Sorry.\n"
)


class MigratingXl(HostXl):
    """HostXl whose running set lives in a state file (listings answered as the xl program's,
    xl_migrate_fake.answer) and whose ``migrate -s ""`` is xl's sending side (tools/xl
    xl_migrate.c ``migrate_domain``): run the host operand by ``sh -c`` as the transport, wait
    for the receiver's banner (nothing is suspended before it), send the stream (xl's header
    and config, then libxl's stream), read the ready message, rename the domain here to
    ``NAME--migratedaway`` (a taken name: resume as NAME), send the permission to go, read the
    report: on success the domain is destroyed here; on the target's failure, once the target
    grants the permission to resume, xl renames it back to NAME (if NAME was taken meanwhile
    the rename fails, and xl resumes it as NAME--migratedaway all the same); if the report or
    that permission does not come, the final handshake failed badly and the domain stays here
    as NAME--migratedaway, suspended.

    ``during()`` runs after all of the stream but its END record is sent (the destination is
    receiving), ``handshake()`` once the domain here is renamed away, before the permission to
    go; ``fault`` cuts the migration short as a dying source would: "cut-stream" (the stream
    ends before its END record), "gone-after-transfer" (both pipes closed after the ready
    message, before the permission to go) or "gone-after-go" (both pipes closed right after
    the permission to go).  ``transport`` is the receiver's exit status and stderr."""

    def __init__(self, xl_path: str, state: Path) -> None:
        self.state = state
        self.during = None
        self.handshake = None
        self.fault = None
        self.transport: tuple[int, str] | None = None
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
            self.transport = (proc.wait(), err)
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
        if not self._rename(name, away):
            return failed(argv, end() + exists(away) + "Migration failed, resuming at sender.\n")
        if self.handshake:
            self.handshake()
        if self.fault == "gone-after-go":  # the way back is cut first: no report can come
            proc.stdout.close()
        proc.stdin.write(xlproc.GO)
        proc.stdin.flush()
        if self.fault == "gone-after-go":
            return failed(argv, end() + FAILED_BADLY)
        report = proc.stdout.read(len(xlproc.REPORT))
        status = proc.stdout.read(1)
        if report != xlproc.REPORT or len(status) != 1:
            return failed(argv, end() + FAILED_BADLY)
        if status != b"\x00":
            back = proc.stdout.read(len(xlproc.GO))
            err = end()
            if back != xlproc.GO:
                return failed(argv, err + FAILED_BADLY)
            if not self._rename(away, name):  # xl ignores it and resumes the domain anyway
                err += exists(name)
            return failed(argv, err + "Migration failed due to problems at target.\n")
        self.running.pop(away)
        return subprocess.CompletedProcess(argv, 0, "", end() + "Migration successful.\n")

    def _rename(self, old: str, new: str) -> bool:
        """libxl_domain_rename: refused if ``new`` is taken (names are unique)."""
        running = self.running
        if new in running:
            return False
        running[new] = running[old]
        running.pop(old)
        return True


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


# -- xl's NAME--migratedaway on the source: the label follows the leaving domain -----------------
AWAY = "web-01--migratedaway"


@pytest.fixture(params=["defined", "transient"])
def leaving(request, banking):
    """banking, with db.prod (dom_HomeBanking) defined on the source too, so that a start of
    it there asks the source's Chinese Wall about what runs there labelled dom_Fun; web-01
    runs on the source from its defined config, or (transient) from a transient config only
    (created or received there: its label lives in that file)."""
    src, dst, xl2, sender = banking
    xl1 = src.backend
    cfg = Path(xl1.config_dir) / "db.prod.cfg"
    text = (XL_DATA / "etc-xen" / "db.prod.cfg").read_text()
    cfg.write_text(text.replace("dom_Payroll", "dom_HomeBanking"))
    cfg.chmod(0o644)
    if request.param == "transient":
        Path(xl1.transient_dir).mkdir(mode=0o700, exist_ok=True)
        shutil.move(Path(xl1.config_dir) / "web-01.cfg", Path(xl1.transient_dir) / "web-01.cfg")
    assert labelled(src, "web-01") == "dom_Fun"
    return src, dst, xl2, sender, request.param


def source_files(src) -> list[str]:
    return sorted(p.name for p in Path(src.backend.transient_dir).glob("web-01*"))


def receiver_ended(sender) -> tuple[int, str]:
    assert sender.transport is not None
    status, err = sender.transport
    assert "Traceback" not in err, err
    return status, err


def test_during_the_handshake_the_source_domain_keeps_its_label_as_name_migratedaway(leaving):
    """xl renames the leaving domain to NAME--migratedaway before it lets the destination go:
    from then on it runs on the source under that name, and the source's Chinese Wall must
    still count it with its label; once migrated, nothing of it is left on the source."""
    src, dst, _xl2, sender, kind = leaving
    seen = {}

    def handshake():
        seen["running"] = dict(state_of(sender)["running"])
        seen["label"] = labelled(src, AWAY)
        conflicts_with_fun(src)  # the source's Chinese Wall counts it, with its label

    sender.handshake = handshake
    r = migrate(src)
    assert r.ok, r.message
    assert seen["running"] == {"Domain-0": 0, AWAY: 3}
    assert seen["label"] == "dom_Fun"
    # gone from the source: no domain, no label under either name (a definition stays one)
    assert set(state_of(sender)["running"]) == {"Domain-0"}
    assert source_files(src) == []
    assert not run(src, ROOT, "dominfo", domain=AWAY).ok
    web = run(src, ROOT, "dominfo", domain="web-01")
    assert web.ok == (kind == "defined"), web.message
    assert labelled(dst, "web-01") == "dom_Fun"
    assert receiver_ended(sender)[0] == 0


def test_a_handshake_that_fails_badly_leaves_the_label_on_name_migratedaway(leaving):
    """The connection breaks right after the source's permission to go: xl on the source
    cannot learn how it ended and leaves the domain as NAME--migratedaway (xl_migrate.c
    failed_badly).  Its label must follow it there (else the Chinese Wall takes it for
    unlabelled), and NAME, under which nothing of it runs here now, keeps no label of ours."""
    src, dst, _xl2, sender, _kind = leaving
    sender.fault = "gone-after-go"
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert state_of(sender)["running"] == {"Domain-0": 0, AWAY: 3}
    assert labelled(src, AWAY) == "dom_Fun"
    conflicts_with_fun(src)
    assert source_files(src) == [f"{AWAY}.cfg"]  # a transient web-01's file went with it
    assert "xl: Migration failed during final handshake" in r.message
    assert f"left on this host as '{AWAY}'" in r.message
    assert f"svirsh destroy {AWAY}" in r.message and f"xl rename {AWAY} web-01" in r.message
    # the destination got the permission to go: it runs web-01, labelled, and says so
    assert labelled(dst, "web-01") == "dom_Fun"
    status, err = receiver_ended(sender)
    assert status == EXIT_FAILED and "runs on this host as 'web-01'" in err
    # once destroyed here, nothing of it is left on the source
    d = run(src, ROOT, "destroy", domain=AWAY)
    assert d.ok, d.message
    assert source_files(src) == []
    assert not [k for k in src.acm.labels.items("vm") if k.startswith(AWAY)]


def test_a_failure_at_the_destination_renames_it_back_with_its_label(leaving):
    """The destination cannot rename its copy (another web-01 runs there), destroys it and
    grants the source its permission to resume: xl renames the domain back to NAME.  The label
    is under NAME again, and nothing is left under NAME--migratedaway."""
    src, dst, xl2, sender, kind = leaving
    seen = {}

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        with dst.acm.exclusive():
            SharedRunning(Path(xl2.xl_path).parent / "xl-state.json")["web-01"] = 7

    def handshake():
        seen["label"] = labelled(src, AWAY)

    sender.during, sender.handshake = during, handshake
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert seen["label"] == "dom_Fun"
    assert state_of(sender)["running"] == {"Domain-0": 0, "web-01": 3}
    assert labelled(src, "web-01") == "dom_Fun"
    conflicts_with_fun(src)
    assert source_files(src) == ([] if kind == "defined" else ["web-01.cfg"])
    assert not run(src, ROOT, "dominfo", domain=AWAY).ok
    assert "left on this host" not in r.message


def test_a_rename_back_xl_cannot_do_leaves_the_label_on_name_migratedaway_only(leaving):
    """As above, but meanwhile another web-01 was started on the source by plain xl: xl's
    rename back fails and it resumes the domain as NAME--migratedaway.  The label goes with
    the domain, and the other web-01 does not inherit the label of the transient one."""
    src, dst, xl2, sender, kind = leaving

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        with dst.acm.exclusive():
            SharedRunning(Path(xl2.xl_path).parent / "xl-state.json")["web-01"] = 7

    def handshake():
        sender.running["web-01"] = 7  # plain xl create on the source, outside secured-virt

    sender.during, sender.handshake = during, handshake
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert state_of(sender)["running"] == {"Domain-0": 0, "web-01": 7, AWAY: 3}
    assert labelled(src, AWAY) == "dom_Fun"
    assert f"left on this host as '{AWAY}'" in r.message
    if kind == "transient":  # its file is not the other web-01's label
        assert source_files(src) == [f"{AWAY}.cfg"]
        assert labelled(src, "web-01") == "__UNLABELED__"


def test_a_domain_running_as_name_migratedaway_already_stops_the_migration(leaving):
    """xl would need that name for the leaving domain; the domain running under it would
    take its label meanwhile.  Refused before xl runs, the other domain left as it was."""
    src, _dst, _xl2, sender, kind = leaving
    sender.running[AWAY] = 7
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert f"a domain named '{AWAY}' runs on this host" in r.message
    assert not [a for a in sender.argvs if a[0] == "migrate"]
    assert labelled(src, AWAY) == "__UNLABELED__"
    assert source_files(src) == ([] if kind == "defined" else ["web-01.cfg"])
    assert state_of(sender)["running"]["web-01"] == 3


# -- the receiver when xl cannot tell it what runs ------------------------------------------------
def fail_xl(backend, *calls) -> None:
    path = Path(backend.xl_path).parent / "xl-state.json"
    state = xlproc.load(path)
    state["fail"] = list(calls)
    xlproc.save(path, state)


def test_xl_domid_failing_does_not_unlabel_the_arrived_domain(banking):
    """``xl domid`` says "maybe this domain does not exist" when libxl cannot list the domains
    at all (xl_info.c main_domid); the receiver must not read that as "not running" and take
    the label of the domain that arrived."""
    src, dst, xl2, sender = banking

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        fail_xl(xl2, "domid")

    sender.during = during
    r = migrate(src)
    assert r.ok, r.message
    fail_xl(xl2)
    assert state_of(xl2)["running"]["web-01"] == 3
    assert labelled(dst, "web-01") == "dom_Fun"
    assert receiver_ended(sender)[0] == 0
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert theirs[-1]["outcome"] == "ok"


def test_xl_failing_while_the_stream_runs_ends_in_a_clear_error_and_keeps_the_label(banking):
    """Once the receiver saw web-01--incoming, this host's xl can no longer list domains: it
    cannot tell which name the arrived domain runs under.  No traceback: an error saying what
    failed and what to do, exit 1, the outcome audited, and the label kept where the domain
    may run (xl exited 0: renamed to web-01, or destroyed), none under web-01--incoming."""
    src, dst, xl2, sender = banking

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        with dst.acm.exclusive():  # the receiver saw it and let go
            fail_xl(xl2, "list", "domid")

    sender.during = during
    r = migrate(src)
    assert r.ok, r.message  # xl on both ends: received
    status, err = receiver_ended(sender)
    assert status == EXIT_FAILED
    assert "list` failed" in err and "getting domain info list" in err
    assert "could not tell which name the arrived domain runs under" in err
    assert "kept under 'web-01'" in err and "svirsh destroy" in err
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert [a["type"] for a in theirs] == ["decision", "outcome"]
    assert theirs[1]["outcome"].startswith("error:")
    assert "getting domain info list" in theirs[1]["outcome"]
    fail_xl(xl2)
    assert state_of(xl2)["running"]["web-01"] == 3
    assert labelled(dst, "web-01") == "dom_Fun"
    conflicts_with_fun(dst)
    assert sorted(p.name for p in Path(xl2.transient_dir).glob("web-01*")) == ["web-01.cfg"]


def test_xl_failing_before_the_stream_refuses_the_domain(banking):
    """The receiver's own check (does a domain of that name run here?) cannot be answered:
    refused before xl reads the stream, so the domain keeps running at the source."""
    src, dst, xl2, sender = banking
    fail_xl(xl2, "list", "domid")
    r = migrate(src)
    assert r.status == EXIT_DENIED, r.message
    assert "getting domain info list" in r.message and "keeps running here" in r.message
    assert state_of(sender)["running"]["web-01"] == 3
    assert '"migrate-receive"' not in (Path(xl2.xl_path).parent / "xl-state.calls").read_text()
    assert not list(Path(xl2.transient_dir).glob("web-01*"))
    status, err = receiver_ended(sender)
    assert status == EXIT_FAILED and "refused:" in err
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert [(a["type"], a["verdict"]) for a in theirs] == [("decision", "denied")]


def test_a_name_taken_again_meanwhile_keeps_the_label_it_was_given(leaving):
    """While the domain runs here as NAME--migratedaway, another web-01 is created here, its
    transient config written as ``create`` writes it (owner bob).  xl cannot rename the
    leaving domain back; the file under web-01 is the other domain's now and must stay."""
    src, dst, xl2, sender, _kind = leaving
    other = (
        'name = "web-01"\nowner = "bob"\n'
        'access_control = ["policy=example.client_v1,label=dom_Fun"]\n'
    )

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        with dst.acm.exclusive():
            SharedRunning(Path(xl2.xl_path).parent / "xl-state.json")["web-01"] = 7

    def handshake():
        Path(src.backend.transient_dir).mkdir(mode=0o700, exist_ok=True)
        (Path(src.backend.transient_dir) / "web-01.cfg").write_text(other)
        sender.running["web-01"] = 7

    sender.during, sender.handshake = during, handshake
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    assert state_of(sender)["running"] == {"Domain-0": 0, "web-01": 7, AWAY: 3}
    assert (Path(src.backend.transient_dir) / "web-01.cfg").read_text() == other
    assert labelled(src, AWAY) == "dom_Fun"


def test_xl_failing_on_the_source_after_the_migration_says_so_and_keeps_the_label(leaving):
    """xl reports success, then the source's xl can no longer list domains: whether xl's
    copy here is gone (xl destroys it, and does not check that it could) is unknown.  The
    migration's error says so; the label stays under NAME--migratedaway, the only name the
    domain may still run under here, until someone looks."""
    src, dst, _xl2, sender, _kind = leaving

    def handshake():
        fail_xl(sender, "list", "domid")

    sender.handshake = handshake
    r = migrate(src)
    fail_xl(sender)
    assert r.status == EXIT_FAILED, r.message
    assert "migrated to host6 (xl reports success)" in r.message
    assert "getting domain info list" in r.message and f"kept under '{AWAY}'" in r.message
    assert source_files(src) == [f"{AWAY}.cfg"]
    assert labelled(dst, "web-01") == "dom_Fun"


def test_xl_failing_when_xl_leaves_name_incoming_keeps_the_label_under_both_names(banking):
    """As above, but the source dies after the transfer: xl exits 1 leaving web-01--incoming
    behind, and the receiver cannot see that.  xl's status leaves both names possible, so the
    label stays under both: the domain that is left there is not unlabelled."""
    src, dst, xl2, sender = banking

    def during():
        wait_for(f"{INCOMING} on host6", lambda: INCOMING in state_of(xl2)["running"])
        with dst.acm.exclusive():
            fail_xl(xl2, "list", "domid")

    sender.during, sender.fault = during, "gone-after-transfer"
    r = migrate(src)
    assert r.status == EXIT_FAILED, r.message
    status, err = receiver_ended(sender)
    assert status == EXIT_FAILED and "kept under 'web-01' and 'web-01--incoming'" in err
    theirs = [a for a in audit(dst) if a.get("op") == "migrate-receive"]
    assert theirs[-1]["type"] == "outcome" and theirs[-1]["outcome"].startswith("error:")
    fail_xl(xl2)
    assert state_of(xl2)["running"][INCOMING] == 3
    assert labelled(dst, INCOMING) == "dom_Fun"
    conflicts_with_fun(dst)
