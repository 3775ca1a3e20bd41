"""audit.py: the hash chain, concurrency across processes and threads, tampering, full disks."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import stat
import subprocess
import sys
import syslog
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from secured_virt.access.audit import GENESIS, AuditError, AuditLog, read, record_hash, verify
from secured_virt.access.identity import Identity
from secured_virt.access.operations import CATALOGUE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def log_path(tmp_path) -> Path:
    return tmp_path / "log" / "audit.log"


@pytest.fixture
def no_syslog(mocker):
    """syslog has no daemon here; record what would have been sent."""
    return mocker.patch("secured_virt.access.audit._syslog.syslog")


def decide(log: AuditLog, n: int = 1, *, user="svt-alice", vm="vm1", allowed=True):
    refs = []
    for i in range(n):
        refs.append(
            log.record_decision(
                uid=4001,
                user=user,
                op="start",
                op_id=6,
                vm=vm,
                allowed=allowed,
                check="rbac",
                rule=f"rule {i}",
                via="svirtd",
                pid=99,
                tty="/dev/pts/1",
            )
        )
    return refs


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


# -- records and the chain ----------------------------------------------------------------------


def test_decision_then_outcome(log_path, no_syslog):
    log = AuditLog(str(log_path))
    (ref,) = decide(log)
    log.record_outcome(ref, "error: domain failed to start")
    first, second = (json.loads(line) for line in lines(log_path))
    assert first["type"] == "decision" and first["seq"] == 1 and first["prev"] == GENESIS
    assert first["verdict"] == "allowed" and first["outcome"] == "pending"
    assert first["check"] == "rbac" and first["rule"] == "rule 0" and first["op"] == "start"
    assert first["hash"] == record_hash(first) == ref.hash
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["type"] == "outcome" and second["ref"] == 1 and second["seq"] == 2
    assert second["outcome"] == "error:domain failed to start" and second["prev"] == ref.hash
    assert second["user"] == "svt-alice" and second["vm"] == "vm1"


def test_denied_decision_is_not_run(log_path, no_syslog):
    decide(AuditLog(str(log_path)), allowed=False)
    rec = json.loads(lines(log_path)[0])
    assert rec["verdict"] == "denied" and rec["outcome"] == "not-run"


def test_gate_interface_with_identity_operation_target_verdict(log_path, no_syslog):
    root_as_bob = Identity(
        uid=0,
        gid=0,
        user="root",
        groups=(0,),
        via="direct",
        requested_as="svt-bob",
        tty="/dev/pts/4",
        pid=1234,
    )
    op = CATALOGUE.get("destroy")
    target = SimpleNamespace(name="bob-db", uuid="c7a5fdbd-0000-4000-8000-000000000001")
    verdict = SimpleNamespace(allowed=False, check="acm", rule="conflict set {A, B}")
    log = AuditLog(str(log_path))
    ref = log.decision(root_as_bob, op, target, verdict)
    log.outcome(ref, "ok")
    dec, out = (json.loads(line) for line in lines(log_path))
    assert (dec["user"], dec["acting_as"], dec["requested_as"]) == ("root", "svt-bob", "svt-bob")
    assert (dec["op_id"], dec["op"], dec["vm"], dec["vm_uuid"]) == (
        13,
        "destroy",
        "bob-db",
        target.uuid,
    )
    assert (dec["verdict"], dec["check"], dec["rule"]) == ("denied", "acm", "conflict set {A, B}")
    assert (dec["via"], dec["tty"], dec["pid"]) == ("direct", "/dev/pts/4", 1234)
    assert out["outcome"] == "ok" and out["ref"] == dec["seq"]


def test_refused_as_is_not_recorded_as_acting(log_path, no_syslog):
    alice = Identity(uid=4001, gid=4001, user="svt-alice", groups=(4001,), via="svirtd",
                     requested_as="root", as_refused=True)  # fmt: skip
    AuditLog(str(log_path)).decision(
        alice,
        CATALOGUE.get("start"),
        SimpleNamespace(name="vm1", uuid=None),
        SimpleNamespace(allowed=False, check="identity", rule="--as is root's alone"),
    )
    rec = json.loads(lines(log_path)[0])
    assert rec["acting_as"] is None and rec["requested_as"] == "root" and rec["user"] == "svt-alice"


def test_files_are_root_only(log_path, no_syslog):
    decide(AuditLog(str(log_path)))
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600 and log_path.stat().st_uid == 0
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700


def test_chain_continues_across_restarts(log_path, no_syslog):
    decide(AuditLog(str(log_path)), 3)
    decide(AuditLog(str(log_path)), 2)  # a new process/instance reads the tail
    res = verify(str(log_path))
    assert res.ok and res.records == 5
    assert [json.loads(line)["seq"] for line in lines(log_path)] == [1, 2, 3, 4, 5]


def test_control_characters_and_unicode_stay_on_one_line(log_path, no_syslog):
    log = AuditLog(str(log_path))
    log.record_decision(uid=1, user="x", op="start", vm="evil\nvm\u2028\x1b[31m", allowed=False,
                        check="rbac", rule="line1\nline2")  # fmt: skip
    assert len(lines(log_path)) == 1
    assert json.loads(lines(log_path)[0])["vm"] == "evil\nvm\u2028\x1b[31m"
    assert verify(str(log_path)).ok


def test_long_fields_are_clipped(log_path, no_syslog):
    AuditLog(str(log_path)).record_decision(uid=1, user="x", op="start", vm="v", allowed=True,
                                            check="rbac", rule="r" * 100_000)  # fmt: skip
    assert len(json.loads(lines(log_path)[0])["rule"]) < 5000


# -- concurrency --------------------------------------------------------------------------------

WRITER = """
import os, sys, time
from secured_virt.access.audit import AuditLog
path, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):
    time.sleep(0.001)
log = AuditLog(path, use_syslog=False)
for i in range(n):
    log.record_decision(uid=0, user=tag, op="list", vm=f"vm{i}", allowed=True, check="rbac",
                        rule=f"{tag} {i}")
"""


def test_concurrent_processes_and_threads_never_fork_the_chain(tmp_path, log_path):
    n, nproc, nthreads = 40, 4, 4
    go = tmp_path / "go"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log_path), f"proc{k}", str(n), str(go)],
            env=env,
            cwd=str(REPO),
        )
        for k in range(nproc)
    ]
    shared = AuditLog(str(log_path), use_syslog=False)  # threads share one instance

    def thread_writer(k):
        while not go.exists():
            time.sleep(0.001)
        for i in range(n):
            shared.record_decision(uid=0, user=f"thread{k}", op="list", vm=f"vm{i}",
                                   allowed=True, check="rbac", rule=f"thread{k} {i}")  # fmt: skip

    threads = [threading.Thread(target=thread_writer, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let every writer reach the start line
    go.touch()
    for t in threads:
        t.join(timeout=120)
    for p in procs:
        assert p.wait(timeout=120) == 0
    res = verify(str(log_path))
    total = n * (nproc + nthreads)
    assert res.ok, res.message
    assert res.records == total
    recs = [json.loads(line) for line in lines(log_path)]
    assert [r["seq"] for r in recs] == list(range(1, total + 1))
    per_writer = {}
    for r in recs:
        per_writer.setdefault(r["user"], []).append(r["rule"])
    assert len(per_writer) == nproc + nthreads
    for tag, rules in per_writer.items():
        assert rules == [f"{tag} {i}" for i in range(n)]  # none lost, each writer in order
    users = [r["user"] for r in recs]
    assert any(users[i] != users[i + 1] for i in range(len(users) - 1))  # really interleaved


# -- tampering ----------------------------------------------------------------------------------


@pytest.fixture
def six(log_path, no_syslog) -> Path:
    log = AuditLog(str(log_path))
    refs = decide(log, 3)
    log.record_outcome(refs[0], "ok")
    decide(log, 2, allowed=False)
    assert verify(str(log_path)).ok
    return log_path


def rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(new_lines))


def test_intact_log_verifies(six):
    res = verify(str(six))
    assert res.ok and res.records == 6 and res.first_bad is None
    assert "6 records, chain intact" in res.message


def test_altered_field_is_found(six):
    ls = lines(six)
    ls[2] = ls[2].replace('"verdict":"allowed"', '"verdict":"denied"')
    rewrite(six, ls)
    res = verify(str(six))
    assert not res.ok and res.first_bad == 3 and res.first_bad_seq == 3 and res.records == 2
    assert "line 3 (seq 3)" in res.message and "altered" in res.message


def test_altered_field_with_recomputed_hash_breaks_the_next_link(six):
    ls = lines(six)
    rec = json.loads(ls[2])
    rec["user"] = "someone-else"
    rec["hash"] = record_hash(rec)
    ls[2] = json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n"
    rewrite(six, ls)
    res = verify(str(six))
    assert not res.ok and res.first_bad == 4 and "prev does not match" in res.message


def test_deleted_line_is_found(six):
    ls = lines(six)
    del ls[2]
    rewrite(six, ls)
    res = verify(str(six))
    assert not res.ok and res.first_bad == 3 and res.first_bad_seq == 4
    assert "expected seq 3" in res.message


def test_deleted_first_line_is_found(six):
    rewrite(six, lines(six)[1:])
    res = verify(str(six))
    assert not res.ok and res.first_bad == 1


def test_reordered_lines_are_found(six):
    ls = lines(six)
    ls[1], ls[2] = ls[2], ls[1]
    rewrite(six, ls)
    res = verify(str(six))
    assert not res.ok and res.first_bad == 2


def test_truncated_last_line_is_found(six):
    data = six.read_bytes()
    six.write_bytes(data[:-15])
    res = verify(str(six))
    assert not res.ok and res.first_bad == 6 and "incomplete last line" in res.message


def test_a_torn_last_line_is_cut_off_and_kept_in_a_recovered_record(six, no_syslog):
    """What kill -9 in the middle of a write leaves: the next append cuts the partial line
    off, keeps its bytes whole in a chained ``recovered`` record, and writes its own record
    after it; the chain then verifies and nothing of the file is lost."""
    data = six.read_bytes()
    whole = lines(six)
    torn = data[:-15]
    six.write_bytes(torn)
    cut_at = len("".join(whole[:5]).encode())
    no_syslog.reset_mock()
    decide(AuditLog(str(six)))
    res = verify(str(six))
    assert res.ok and res.records == 7, res
    recs = [json.loads(line) for line in lines(six)]
    assert [r["seq"] for r in recs] == list(range(1, 8))
    recovered = recs[5]
    assert recovered["type"] == "recovered" and recovered["prev"] == recs[4]["hash"]
    fragment = base64.b64decode(recovered["torn_base64"])
    assert fragment == torn[cut_at:] and recovered["torn_bytes"] == len(fragment)
    assert recovered["cut_at"] == cut_at
    assert recovered["torn_sha256"] == hashlib.sha256(fragment).hexdigest()
    assert recovered["pid"] == os.getpid() and recovered["uid"] == os.getuid()
    assert recs[6]["type"] == "decision" and recs[6]["prev"] == recovered["hash"]
    # everything the file held is still in it: the good lines as they were, the torn one kept
    assert six.read_bytes().startswith(torn[:cut_at])
    (prio, msg), _decision = (c.args for c in no_syslog.call_args_list)
    assert prio == syslog.LOG_AUTHPRIV | syslog.LOG_ALERT
    assert msg.startswith("secured-virt: RECOVERED seq=6 ") and f"{len(fragment)} bytes" in msg


def test_a_log_that_is_only_a_torn_line_starts_its_chain_at_the_recovered_record(
    log_path, no_syslog
):
    log_path.parent.mkdir(mode=0o700)
    log_path.write_bytes(b'{"check":"rbac","op":"st')
    log_path.chmod(0o600)
    decide(AuditLog(str(log_path)))
    recovered, decision = (json.loads(line) for line in lines(log_path))
    assert (recovered["seq"], recovered["prev"], recovered["cut_at"]) == (1, GENESIS, 0)
    assert base64.b64decode(recovered["torn_base64"]) == b'{"check":"rbac","op":"st'
    assert decision["seq"] == 2 and verify(str(log_path)).ok


@pytest.mark.parametrize("write", [decide, AuditLog.recover], ids=["append", "recover"])
def test_a_torn_line_is_put_back_when_the_write_after_the_cut_fails(tiny_fs, no_syslog, write):
    """Disk full right after the cut (the recovered record needs ~300 bytes more than the 15
    the cut freed): the write is refused and the cut bytes go back, so the file is exactly
    what it was (the next append, with room, recovers it)."""
    path = tiny_fs / "log" / "audit.log"
    log = AuditLog(str(path))
    with pytest.raises(AuditError, match="No space left on device"):
        for _ in range(1000):
            decide(log)
    torn = path.read_bytes()[:-15]
    with open(path, "r+b") as fh:
        fh.truncate(len(torn))
    with pytest.raises(AuditError, match="No space left on device"):
        write(AuditLog(str(path)))
    assert path.read_bytes() == torn


def test_a_torn_line_in_an_append_only_log_is_refused_and_left_alone(six, no_syslog):
    """chattr +a: the line cannot be cut, so every append is refused (as before recovery
    existed) until an administrator repairs the log; nothing is added to it."""
    torn = six.read_bytes()[:-15]
    six.write_bytes(torn)
    if subprocess.run(["chattr", "+a", str(six)], capture_output=True).returncode:
        pytest.skip("this file system has no append-only attribute")
    try:
        with pytest.raises(AuditError, match=r"incomplete record .*cannot be cut"):
            decide(AuditLog(str(six)))
    finally:
        subprocess.run(["chattr", "-a", str(six)], check=True)
    assert six.read_bytes() == torn


def test_recover_cuts_a_torn_line_without_an_append_of_its_own(six, no_syslog):
    """svirtd's start-up: the torn line is cut off and kept, the chain verifies at once, and
    nothing else is written; a log that ends in a whole line, or none at all, is left as it
    is (not created)."""
    data = six.read_bytes()
    torn = data[:-15]
    six.write_bytes(torn)
    no_syslog.reset_mock()
    rec = AuditLog(str(six)).recover()
    assert rec["type"] == "recovered" and rec["seq"] == 6
    assert base64.b64decode(rec["torn_base64"]) == torn[rec["cut_at"] :]
    res = verify(str(six))
    assert res.ok and res.records == 6
    assert json.loads(lines(six)[-1]) == rec
    ((prio, msg),) = (c.args for c in no_syslog.call_args_list)
    assert prio == syslog.LOG_AUTHPRIV | syslog.LOG_ALERT and "RECOVERED seq=6" in msg
    whole = six.read_bytes()
    assert AuditLog(str(six)).recover() is None and six.read_bytes() == whole
    decide(AuditLog(str(six)))  # and the chain goes on from the recovered record
    assert verify(str(six)).records == 7
    missing = six.parent / "none.log"
    assert AuditLog(str(missing)).recover() is None and not missing.exists()


def test_recover_refuses_an_append_only_log_and_leaves_it(six, no_syslog):
    torn = six.read_bytes()[:-15]
    six.write_bytes(torn)
    if subprocess.run(["chattr", "+a", str(six)], capture_output=True).returncode:
        pytest.skip("this file system has no append-only attribute")
    try:
        with pytest.raises(AuditError, match="cannot be cut"):
            AuditLog(str(six)).recover()
    finally:
        subprocess.run(["chattr", "-a", str(six)], check=True)
    assert six.read_bytes() == torn


def test_a_line_being_written_by_a_live_writer_is_not_cut(six, no_syslog):
    """The cut happens under the flock: a writer of another open file (another process) in
    the middle of its line holds the lock, so an append waits for the line to be finished
    instead of taking it for a torn one."""
    from secured_virt.access.audit import canonical_json

    last = json.loads(lines(six)[-1])
    rec = {"v": 1, "type": "note", "seq": last["seq"] + 1, "time": "t", "prev": last["hash"]}
    rec["hash"] = record_hash(rec)
    line = canonical_json(rec) + b"\n"
    fd = os.open(six, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, line[:20])
    appended = threading.Thread(target=decide, args=(AuditLog(str(six)),))
    appended.start()
    time.sleep(0.3)  # the append is waiting for the lock; the half line is still there
    assert appended.is_alive()
    os.write(fd, line[20:])
    os.fsync(fd)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    appended.join(10)
    recs = [json.loads(x) for x in lines(six)]
    assert [r["type"] for r in recs[-2:]] == ["note", "decision"]
    assert "recovered" not in {r["type"] for r in recs} and verify(str(six)).ok


def test_garbage_line_is_found(six):
    rewrite(six, [*lines(six), "not json\n"])
    res = verify(str(six))
    assert not res.ok and res.first_bad == 7 and "not a JSON record" in res.message


# -- refusing to write --------------------------------------------------------------------------


def test_full_disk_raises_and_leaves_nothing_half_written(tiny_fs, no_syslog):
    path = tiny_fs / "log" / "audit.log"
    log = AuditLog(str(path))
    written = 0
    with pytest.raises(AuditError, match="No space left on device"):
        for _ in range(1000):
            decide(log)
            written += 1
    size_after_failure = path.stat().st_size
    assert written > 5
    assert path.read_bytes().endswith(b"\n") and len(lines(path)) == written
    res = verify(str(path))
    assert res.ok and res.records == written
    with pytest.raises(AuditError):  # still full: still refused, still nothing added
        decide(log)
    assert path.stat().st_size == size_after_failure
    failures = [c for c in no_syslog.call_args_list if "NOT LOGGED" in c.args[1]]
    assert len(failures) == 2
    assert failures[0].args[0] == syslog.LOG_AUTHPRIV | syslog.LOG_ALERT


def test_log_that_is_a_symlink_is_refused(log_path, tmp_path, no_syslog):
    log_path.parent.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    target.chmod(0o600)
    log_path.symlink_to(target)
    with pytest.raises(AuditError, match="cannot open the audit log"):
        decide(AuditLog(str(log_path)))
    assert target.read_text() == ""


@pytest.mark.parametrize(
    ("setup", "pattern"),
    [
        (lambda p, u: p.chmod(0o644), "mode 0644"),
        (lambda p, u: os.chown(p, u, -1), "owned by uid"),
        (lambda p, u: os.link(p, p.with_name("copy")), "hard links"),
        (lambda p, u: os.chmod(p.parent, 0o755), "grants more than 0750"),
    ],
)
def test_unsafe_log_file_or_directory_is_refused(log_path, no_syslog, test_users, setup, pattern):
    decide(AuditLog(str(log_path)))
    before = log_path.read_bytes()
    setup(log_path, test_users["svt-alice"].pw_uid)
    with pytest.raises(AuditError, match=pattern):
        decide(AuditLog(str(log_path)))
    assert log_path.read_bytes() == before


def test_directory_mode_0750_is_accepted(log_path, no_syslog):
    log_path.parent.mkdir()
    log_path.parent.chmod(0o750)
    decide(AuditLog(str(log_path)))
    assert verify(str(log_path)).ok


# -- syslog and reading --------------------------------------------------------------------------


def test_syslog_line_per_record(log_path, no_syslog):
    log = AuditLog(str(log_path))
    (ref,) = decide(log)
    log.record_outcome(ref, "ok")
    log.record_decision(uid=1, user="svt-bob", op="destroy", vm="x\ny", allowed=False,
                        check="rbac", rule="no role grants destroy")  # fmt: skip
    (allow_prio, allow_msg), (out_prio, out_msg), (deny_prio, deny_msg) = (
        c.args for c in no_syslog.call_args_list
    )
    assert allow_prio == syslog.LOG_AUTHPRIV | syslog.LOG_NOTICE
    assert allow_msg.startswith("secured-virt: ALLOWED seq=1 user=svt-alice")
    assert f"hash={ref.hash[:16]}" in allow_msg
    assert out_prio == syslog.LOG_AUTHPRIV | syslog.LOG_INFO and "ref=1" in out_msg
    assert deny_prio == syslog.LOG_AUTHPRIV | syslog.LOG_ALERT
    assert "DENIED" in deny_msg and "vm=x#012y" in deny_msg and "\n" not in deny_msg


def test_syslog_can_be_switched_off(log_path, no_syslog):
    decide(AuditLog(str(log_path), use_syslog=False))
    assert no_syslog.call_count == 0


def test_read_filters(log_path, no_syslog):
    log = AuditLog(str(log_path))
    (a,) = decide(log, user="svt-alice", vm="vm1")
    log.record_outcome(a, "ok")
    decide(log, user="svt-bob", vm="vm2", allowed=False)
    log.record_decision(uid=0, user="root", acting_as="svt-alice", op="start", vm="vm3",
                        allowed=True, check="rbac", rule="r")  # fmt: skip
    p = str(log_path)
    assert [r["seq"] for r in read(p, user="svt-alice")] == [1, 2, 4]
    assert [r["seq"] for r in read(p, vm="vm2")] == [3]
    assert [r["seq"] for r in read(p, denied=True)] == [3]
    assert [r["seq"] for r in read(p, denied=False)] == [1, 2, 4]
    assert list(read(p, since="2999-01-01T00:00:00Z")) == []
    assert len(list(read(p, since="2000-01-01T00:00:00Z"))) == 4
