"""A read's two audit records share one sync before its reply; a change still syncs its
decision before it acts (issue 18; access/audit.py, "Reads").

Through ``Service.handle`` on a libvirt test-driver node, with the real audit log.  What is
"durable" is what the log held at an fdatasync of the log's fd: each sync is recorded with
the file's content at that moment.  The rule checked: no reply returns before its decision
and outcome records were synced; no state-changing action starts before its decision record
was synced; a read whose records cannot be written gets no answer.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from secured_virt.access import audit
from secured_virt.access.identity import Identity
from secured_virt.config import default_config
from secured_virt.requests import EXIT_FAILED, EXIT_OK, Request
from secured_virt.service import Service

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root-owned policy files: run as root")

NODE = """<node>
<domain type="test"><name>vm-a</name><memory>65536</memory><vcpu>1</vcpu>
<os><type>hvm</type></os></domain>
<domain type="test"><name>vm-b</name><memory>65536</memory><vcpu>1</vcpu>
<os><type>hvm</type></os></domain>
</node>"""

ROOT = Identity(uid=0, gid=0, user="root", groups=(0,), via="svirsh", pid=os.getpid())


def write_root(path, text: str):
    path.write_text(text)
    os.chmod(path, 0o644)
    os.chown(path, 0, 0)


@pytest.fixture
def env(tmp_path, mocker, monkeypatch):
    mocker.patch("secured_virt.access.audit._syslog.syslog")
    etc = tmp_path / "etc"
    etc.mkdir()
    write_root(etc / "ua.xml", "<UserConfiguration/>")
    write_root(etc / "pa.xml", "<RolePolicyDefinition/>")
    (etc / "node.xml").write_text(NODE)
    (tmp_path / "log").mkdir(mode=0o700)
    log = tmp_path / "log" / "audit.log"
    cfg = dataclasses.replace(
        default_config(),
        uri=f"test://{etc / 'node.xml'}",
        ua=str(etc / "ua.xml"),
        pa=str(etc / "pa.xml"),
        audit_log=str(log),
        audit_syslog=False,
        auth_dir=str(tmp_path / "ts"),
        label_store=str(tmp_path / "labels.xml"),
        acm_state_dir=str(tmp_path / "acm"),
        svirt=False,
    )
    synced: list[bytes] = []  # the log's content at each sync of the log
    real = os.fdatasync

    def fdatasync(fd):
        real(fd)
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(log):
            synced.append(log.read_bytes())

    monkeypatch.setattr(audit.os, "fdatasync", fdatasync)
    svc = Service(cfg)
    yield svc, log, synced


def records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def durable(synced: list[bytes]) -> list[dict]:
    return records(synced[-1]) if synced else []


@pytest.mark.parametrize(
    "command, args",
    [
        ("dominfo", {"domain": "vm-a"}),
        ("domstate", {"domain": "vm-a"}),
        ("dumpxml", {"domain": "vm-a"}),
        ("list", {"all": True}),
    ],
)
def test_a_read_replies_only_once_both_records_are_synced_by_one_sync(env, command, args):
    svc, log, synced = env
    before = len(synced)
    reply = svc.handle(ROOT, Request(command, args))
    assert reply.status == EXIT_OK, reply.message
    recs = durable(synced)
    decision, outcome = recs[-2], recs[-1]
    assert decision["type"] == "decision" and decision["op"] == command
    assert decision["verdict"] == "allowed" and decision["outcome"] == "pending"
    assert outcome["type"] == "outcome" and outcome["ref"] == decision["seq"]
    assert outcome["outcome"] == "ok"
    assert len(synced) - before == 1  # one sync for both (two before: decision, outcome)
    assert audit.verify(str(log)).ok


@pytest.mark.parametrize("command", ["destroy", "suspend"])
def test_a_change_starts_only_after_its_decision_is_synced(env, command):
    svc, _log, synced = env
    seen: list[list[dict]] = []
    real = getattr(svc.backend, command)

    def acting(name):
        seen.append(durable(synced))  # what is on disk when the hypervisor is asked
        return real(name)

    setattr(svc.backend, command, acting)
    reply = svc.handle(ROOT, Request(command, {"domain": "vm-a"}))
    assert reply.status == EXIT_OK, reply.message
    assert len(seen) == 1
    last = seen[0][-1]
    assert last["type"] == "decision" and last["op"] == command
    assert last["verdict"] == "allowed"
    recs = durable(synced)  # and the outcome too before the reply
    assert recs[-1]["type"] == "outcome" and recs[-1]["ref"] == last["seq"]


def test_a_read_whose_records_cannot_be_written_gets_no_answer(env, monkeypatch):
    svc, log, _synced = env
    assert svc.handle(ROOT, Request("domstate", {"domain": "vm-a"})).status == EXIT_OK
    size = log.stat().st_size

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(audit.os, "fdatasync", failing)
    reply = svc.handle(ROOT, Request("dumpxml", {"domain": "vm-a"}))
    assert reply.status == EXIT_FAILED
    assert reply.data is None  # the XML read never leaves
    assert "audit log could not be written" in reply.message
    assert log.stat().st_size == size  # nothing half-written either
