"""kill -9 of a process writing the audit log, at random moments, many times over.

What must hold whatever the moment (docs/audit-format.md, "When a record is durable" and "A
torn last line"): every record the killed writer was told is written is in the file; the
file's whole lines chain; and the next append leaves a chain that verifies, keeping an
incomplete last line the kill left (if any) whole in a ``recovered`` record.

The log is on a tmpfs, where ``fdatasync`` costs nothing, so the writer spends its time
building and writing records rather than waiting for a disk: that makes kills in the middle
of a write (the kernel stops a write of several pages at a page boundary when SIGKILL
arrives) frequent enough, and the test goes on until it has seen one, so the recovery is exercised
on lines a real kill tore, not only on lines cut by hand (test_audit.py).
"""

from __future__ import annotations

import base64
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from secured_virt.access.audit import AuditLog, verify

REPO = Path(__file__).resolve().parents[2]

#: three threads appending records of ~20 KB (twenty 1000-byte fields), so a group-committed
#: write spans many pages; each record's seq goes to stdout once ``append`` returned
WRITER = r"""
import os, sys, threading
from secured_virt.access.audit import AuditLog
log = AuditLog(sys.argv[1], use_syslog=False)
fields = {f"f{i:02d}": chr(97 + i) * 1000 for i in range(20)}
def run(t):
    while True:
        rec = log.append({"type": "note", "thread": t, **fields})
        os.write(1, b"%d\n" % rec["seq"])
for t in range(3):
    threading.Thread(target=run, args=(t,), daemon=True).start()
os.write(1, b"go\n")
threading.Event().wait()
"""

#: kills at least, and at most while none has torn a line yet.  Even here a writer spends only
#: ~5% of its time inside write() (encoding and hashing a record cost more than copying it),
#: so about one kill in 25 tears a line: 400 kills without one would happen once in 10^7 runs
MIN_CYCLES, MAX_CYCLES = 10, 400


def _run_and_kill(log_path: Path, after: float) -> set[int]:
    """Start a writer, SIGKILL it ``after`` seconds into its writing; the seqs it was told
    were written."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log_path)],
        stdout=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
    )
    try:
        out = b""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while b"go\n" not in out:
            assert time.monotonic() < deadline, "the writer did not start"
            if sel.select(1):
                out += os.read(proc.stdout.fileno(), 65536)
        time.sleep(after)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        out += proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return {int(x) for x in out.split() if x.isdigit()}


def test_kill_9_at_random_moments_loses_no_acknowledged_record(roomy_tmpfs):
    rng = random.Random(1234)
    (roomy_tmpfs / "log").mkdir(mode=0o700)
    log_path = roomy_tmpfs / "log" / "audit.log"
    torn = cycles = 0
    while cycles < MIN_CYCLES or not torn:
        assert cycles < MAX_CYCLES, f"{cycles} kills, none in the middle of a write"
        cycles += 1
        log_path.unlink(missing_ok=True)
        acked = _run_and_kill(log_path, rng.uniform(0.005, 0.04))
        data = log_path.read_bytes()
        whole, _, rest = data.rpartition(b"\n")
        on_disk = [json.loads(line) for line in whole.split(b"\n")] if whole else []
        # every acknowledged record is there, whole, and the whole lines chain
        assert acked <= {r["seq"] for r in on_disk}
        before = verify(str(log_path))
        assert before.ok == (not rest), before
        assert before.records == len(on_disk)
        # the next writer continues the chain, keeping a torn line in a recovered record
        AuditLog(str(log_path), use_syslog=False).append({"type": "note", "after": "kill"})
        after = verify(str(log_path))
        assert after.ok, after
        recs = [json.loads(line) for line in log_path.read_bytes().splitlines()]
        assert recs[: len(on_disk)] == on_disk
        if rest:
            torn += 1
            recovered, last = recs[len(on_disk) :]
            assert recovered["type"] == "recovered" and last["after"] == "kill"
            assert base64.b64decode(recovered["torn_base64"]) == rest
            assert recovered["cut_at"] == len(whole) + 1
        else:
            assert [r.get("after") for r in recs[len(on_disk) :]] == ["kill"]
