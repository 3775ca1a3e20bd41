"""Issue 14, item 10: a caller with no rights must not be able to fill the disk through the
audit log (on a full disk every request of every user is refused).

The attack, reproduced on the real svirtd: one connection of a real uid with no roles sends
10,000 requests naming a VM whose name is 4,000 non-ASCII characters (six bytes each once
escaped).  Before the fix each denial was a record of tens of KB: hundreds of MB in seconds.
Now records are clipped by bytes after escaping and denials are rate-limited per uid, with a
``suppressed`` summary record that accounts for every dropped denial; the chain still
verifies."""

from __future__ import annotations

import json
import pwd
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from reach_helpers import client_snippet, file_size, running_svirtd, setpriv_prefix

from secured_virt.access import audit

pytestmark = pytest.mark.integration

REQUESTS = 10_000
CHUNK = 500
BOUND = 1_000_000  # bytes of audit log for the whole flood

#: runs as the attacker: one connection; for each number N read from stdin, N requests
FLOOD = """
import _socket, sys
def frame(obj):
    body = json.dumps(obj).encode()
    return len(body).to_bytes(4, "big") + body
def read(s):
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head))
    n = int.from_bytes(head, "big"); body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return json.loads(body)
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(frame({"type": "hello", "version": 1}))
read(s)
name = sys.argv[2]
for line in sys.stdin:
    seen = {}
    for _ in range(int(line)):
        s.sendall(frame({"type": "request", "request": {"command": "destroy",
                         "args": {"domain": name}, "as_user": None}}))
        r = read(s)["reply"]
        key = f"{r['status']}/{r['check']}"
        seen[key] = seen.get(key, 0) + 1
    print(json.dumps(seen), flush=True)
"""


@pytest.fixture
def env():
    with running_svirtd() as e:
        yield e


def test_one_connection_without_roles_cannot_flood_the_audit_log(env, readable_src):
    nobody = pwd.getpwnam("nobody")  # a real uid with a passwd entry and no roles in UA
    name = "\u0436" * 4000  # 'zh': printable, but six bytes once escaped
    before = file_size(env.audit_log)
    argv = [*client_snippet(readable_src, FLOOD), env.socket, name]
    proc = subprocess.Popen(
        [*setpriv_prefix(nobody), *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/",
    )  # fmt: skip
    try:
        for sent in range(CHUNK, REQUESTS + 1, CHUNK):
            proc.stdin.write(f"{CHUNK}\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line, f"the flood client died: {proc.stderr.read()}"
            assert json.loads(line) == {"3/rbac": CHUNK}, line  # every one an RBAC denial
            grown = file_size(env.audit_log) - before
            # stop early (and fail) rather than fill the disk when the limit is missing
            assert grown < BOUND, f"{grown} bytes of audit log after {sent} denied requests"
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert env.d.stop(signal.SIGTERM) == 0  # shutdown writes what is still only counted
    assert file_size(env.audit_log) - before < BOUND

    records = env.audit_records()
    mine = [r for r in records if r.get("uid") == nobody.pw_uid]
    written = [r for r in mine if r["type"] == "decision"]
    summaries = [r for r in mine if r["type"] == "suppressed"]
    assert summaries, "dropped denials must be summarised"
    # every denied request is accounted for: written one by one or counted in a summary
    assert len(written) + sum(s["dropped"] for s in summaries) == REQUESTS
    assert all(r["verdict"] == "denied" and r["op"] == "destroy" for r in written)
    assert all(s["ops"] == {"destroy": s["dropped"]} for s in summaries)
    assert all(s["checks"] == {"rbac": s["dropped"]} for s in summaries)
    assert summaries[0]["vm_samples"][0].startswith("\u0436" * 40)
    assert summaries[0]["vm_samples"][0].endswith(audit.TRUNCATED)
    with open(env.audit_log, "rb") as fh:
        longest = max(len(line) for line in fh)
    assert longest < 4 * audit.MAX_FIELD_BYTES, longest  # the name is clipped by bytes
    assert audit.verify(env.audit_log).ok, audit.verify(env.audit_log).message


def test_line_separators_are_clipped_by_bytes_after_escaping(tmp_path):
    """4,000 x U+2028 is 24 KB once escaped; a field may take MAX_FIELD_BYTES of the line."""
    path = tmp_path / "log" / "audit.log"
    log = audit.AuditLog(str(path), use_syslog=False)
    name = "\u2028" * 4000
    log.record_decision(uid=4242, user="mallory", op="destroy", vm=name, allowed=False,
                        check="rbac", rule=f"no role grants destroy on {name!r}")  # fmt: skip
    line = path.read_bytes()
    assert len(line) < 3 * audit.MAX_FIELD_BYTES, len(line)
    rec = json.loads(line)
    for field in ("vm", "rule"):
        assert len(json.dumps(rec[field])) - 2 <= audit.MAX_FIELD_BYTES
        assert rec[field].endswith(audit.TRUNCATED)
    assert rec["vm"].startswith("\u2028" * 100)
    # astral characters (12 bytes escaped) and quotes/backslashes (2) count what they cost
    log.record_decision(uid=4242, user="m", op="x", vm="\U0001f600" * 1000 + '"\\' * 900,
                        allowed=True, check="rbac", rule="r")  # fmt: skip
    rec = json.loads(path.read_bytes().splitlines()[-1])
    assert len(json.dumps(rec["vm"])) - 2 <= audit.MAX_FIELD_BYTES
    assert audit.verify(str(path)).ok


def test_allowed_decisions_are_never_dropped(tmp_path):
    """The limit is on denials only: an allowed decision must be on disk before it runs."""
    path = tmp_path / "log" / "audit.log"
    log = audit.AuditLog(str(path), use_syslog=False, denied_burst=2, denied_per_second=0.001)
    for _ in range(50):
        log.record_decision(uid=7, user="u", op="start", vm="v", allowed=True, check="rbac",
                            rule="granted")  # fmt: skip
        log.record_decision(uid=7, user="u", op="destroy", vm="v", allowed=False, check="rbac",
                            rule="no")  # fmt: skip
    log.close()
    recs = list(audit.read(str(path)))
    assert sum(r.get("verdict") == "allowed" for r in recs) == 50
    assert sum(r["type"] == "decision" and r["verdict"] == "denied" for r in recs) == 2
    (summary,) = [r for r in recs if r["type"] == "suppressed"]
    assert summary["dropped"] == 48 and summary["uid"] == 7
    # another uid has its own bucket
    log.record_decision(uid=8, user="w", op="destroy", vm="v", allowed=False, check="rbac",
                        rule="no")  # fmt: skip
    assert list(audit.read(str(path)))[-1]["uid"] == 8
    assert audit.verify(str(path)).ok
