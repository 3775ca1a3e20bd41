"""The audit log counts its group-commit writes and times their syncs and how long each
caller waited for its records to be on disk, and svirtd's status shows it
(access.audit.WriteTimes): what every allowed request waits for, visible to root."""

from __future__ import annotations

import threading

import pytest
from svtd_helpers import running_svirtd

from secured_virt import client
from secured_virt.access.audit import AuditError, AuditLog, WriteTimes
from secured_virt.requests import Request


def test_every_write_is_counted_with_its_records_and_its_sync(tmp_path):
    log = AuditLog(str(tmp_path / "audit.log"), use_syslog=False)
    assert log.write_times.snapshot() == {"writes": 0, "records": 0}
    for i in range(3):
        log.append({"type": "note", "n": i})
    log.append_pair({"type": "decision", "verdict": "allowed"}, {"type": "outcome"})
    snap = log.write_times.snapshot()
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert (snap["writes"], snap["records"], len(lines)) == (4, 5, 5)
    recent = snap["recent"]
    assert recent["writes"] == 4 and recent["records_per_write"] == 1.2
    assert 0 < recent["sync_ms_p50"] <= recent["sync_ms_p99"] <= recent["sync_ms_max"]


def _one_written_then_one_refused(tmp_path) -> AuditLog:
    """A log with one record written, then a last line that is no record, which refuses the
    next one."""
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), use_syslog=False)
    log.append({"type": "note"})
    with open(path, "a") as fh:
        fh.write("not a record\n")
    with pytest.raises(AuditError, match="not an audit record"):
        log.append({"type": "note"})
    return log


def test_a_failed_write_is_not_counted(tmp_path):
    """Only what reached the disk: a write refused (a broken last line) adds nothing."""
    log = _one_written_then_one_refused(tmp_path)
    assert log.write_times.snapshot()["records"] == 1


def test_each_caller_s_wait_for_the_disk_is_timed_once(tmp_path):
    """One wait per submission, whatever it carries (a record, or a decision with its
    outcome); a wait covers the caller's own write and sync, so it is never shorter."""
    log = AuditLog(str(tmp_path / "audit.log"), use_syslog=False)
    log.append({"type": "note"})
    log.append_pair({"type": "decision", "verdict": "allowed"}, {"type": "outcome"})
    recent = log.write_times.snapshot()["recent"]
    assert recent["waits"] == 2 and recent["writes"] == 2
    assert recent["sync_ms_max"] <= recent["wait_ms_max"]
    assert 0 < recent["wait_ms_p50"] <= recent["wait_ms_p99"] <= recent["wait_ms_max"]


def test_threads_appending_at_once_each_count_their_wait(tmp_path):
    """Group commit: several threads share writes, and every one of them still counts the
    wait it had (the totals of writes stay the writer's)."""
    log = AuditLog(str(tmp_path / "audit.log"), use_syslog=False)
    go = threading.Barrier(8)

    def worker(i):
        go.wait()
        for k in range(5):
            log.append({"type": "note", "thread": i, "k": k})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = log.write_times.snapshot()
    assert snap["records"] == 40 and snap["recent"]["waits"] == 40
    assert snap["writes"] <= 40


def test_a_refused_write_has_no_wait(tmp_path):
    log = _one_written_then_one_refused(tmp_path)
    assert log.write_times.snapshot()["recent"]["waits"] == 1


def test_the_window_keeps_the_last_writes_and_the_totals_all():
    times = WriteTimes()
    for i in range(WriteTimes.WINDOW + 10):
        times.add(2, 0.001 if i < 10 else 0.004)
    snap = times.snapshot()
    assert snap["writes"] == WriteTimes.WINDOW + 10 and snap["records"] == 2 * snap["writes"]
    assert snap["recent"]["writes"] == WriteTimes.WINDOW
    assert snap["recent"]["sync_ms_p50"] == snap["recent"]["sync_ms_max"] == 4.0


@pytest.mark.integration
def test_svirtd_status_shows_the_audit_writes_of_its_requests():
    with running_svirtd() as env:
        for _ in range(3):
            reply = client.call(env.socket, Request("list", {"all": True}), password_cb=None)
            assert reply.status == 0
        writes = client.admin_status(env.socket).data["audit"]["writes"]
        on_disk = env.audit_records()
        # a read's decision and outcome go out in one write; the status request itself is
        # audited too, after its reply was made
        assert writes["records"] >= 6 and writes["records"] <= len(on_disk)
        assert writes["writes"] >= 3 and writes["recent"]["sync_ms_p50"] > 0
        # every read waited for its decision and outcome: one wait each at least
        assert writes["recent"]["waits"] >= 3 and writes["recent"]["wait_ms_p50"] > 0
