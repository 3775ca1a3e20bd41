"""The audit log: one hash-chained JSON line per decision, written *before* the operation runs.

Why this shape:

* **Decision first, outcome second.**  ``record_decision`` is called by the gate before the
  backend is touched and returns only after the line is on disk (write + fsync).  If that fails
  it raises ``AuditError`` and the gate refuses the request — nothing ever runs unaudited.
  When the backend has finished, ``record_outcome`` appends a second, linked record
  (``type: "outcome"``, ``ref: <seq of the decision>``).  Losing an outcome (crash in
  between) is visible: an allowed decision whose ``outcome`` is ``pending`` with no outcome
  record referring to it.
* **Hash chain across restarts.**  Each record carries ``prev`` (the previous record's hash)
  and ``hash`` (SHA-256 over the canonical JSON of the record without ``hash``).  On each
  append the last line is read back from the end of the file, so the chain continues across
  process restarts and across the many processes (``svirsh`` in direct mode, ``svirtd``'s
  threads) writing at once.  ``verify`` names the first broken record.
* **No forks in the chain.**  read-last-hash + write + fsync happen under ``flock(LOCK_EX)``
  on the log file (between processes) and a thread lock (between threads of one process,
  which would share a lock on the same open file description).
* **Group commit.**  Threads of one process that append at the same moment share one write
  and one ``fdatasync``: the first becomes the writer and takes everything queued, the others
  wait until their record is on disk; when the writer is done it wakes each of its batch's
  threads and hands the writer's role to the first record queued meanwhile
  (``secured_virt.groupcommit``, shared with the sVirt categories).  Each caller
  still returns only once *its* record is durable, so a decision is on disk before its
  action starts and an acknowledged record survives a crash; what changes is that 50
  concurrent requests pay a few fsyncs, not 100.
  The log's fd is kept open between batches; before each batch the file and its directory are
  re-checked with ``lstat`` (same inode, owner, mode, one link) and reopened (with the full
  checks) when anything changed, e.g. after log rotation.
* **Reads: decision and outcome with one sync.**  An allowed operation that only reads (its
  catalogue kind is ``read`` and its mediation row's reach is ``none``; the service decides
  which, ``Service._defers_audit``) does not wait for its decision record alone: the record
  is kept (``decision(..., defer=True)``, an ``AuditRef`` with ``unwritten``) and written with
  its outcome record as one pair, in one group-committed write and sync, when the read is
  done and *before its reply is sent*; if that write fails the reply is refused (no data
  leaves).  Why this keeps the rule: a read changes nothing and has no effect outside svirtd
  until its reply leaves, so "no action starts before its decision is durable" is about
  effects, and none can be seen before both records are on disk; kill -9 before the sync
  loses a request nobody got an answer to, never an acknowledged record.  Every operation
  that changes anything still waits for its decision record before it starts.
* **Nothing half-written.**  If the write or fsync fails (disk full, I/O error) the file is
  truncated back to its previous length before ``AuditError`` is raised.
* **A torn last line is recovered, not lost.**  A writer killed in the middle of its write
  (kill -9, the OOM killer, a crash, power loss) can leave the file ending in part of a line:
  the kernel may stop a large write at a page boundary when a fatal signal arrives.  That
  line was never synced, so no caller was answered on it.  The next writer, holding the
  ``flock`` (so no live writer can be in the middle of a write), cuts it off and chains a
  ``recovered`` record that keeps the cut bytes whole (base64, with their length, offset and
  SHA-256), in the same write and sync as its own batch; if that write fails the cut bytes are
  put back.  svirtd does the same at start-up (``recover``), so the chain verifies as soon
  as it is back.  Without this every request would be refused after such a crash until an
  administrator repaired the log by hand.  On an append-only (``chattr +a``) file the line
  cannot be cut: then appends are refused, as before, until an administrator repairs it.
* **Files.**  The log is root-owned 0600, single-link, opened O_APPEND|O_NOFOLLOW in a
  root-owned directory of mode 0700 or 0750 (created 0700).  ``chattr +a`` may be set by the
  admin; then a failed write cannot be rolled back (nor a torn line cut off), and ``verify``
  will show the torn line.
* **syslog** (facility authpriv) gets one short line per record, including the start of the
  record's hash — an off-host copy of the chain's head, which is what detects someone cutting
  records off the *end* of the file (a chain alone cannot).  It also gets a line when the disk
  write failed, so a refused request still leaves a trace.

Record format (see docs/audit-format.md for the full description)::

  {"v":1,"type":"decision","seq":12,"time":"2025-01-31T12:00:00.123456Z",
   "uid":1001,"user":"alice","acting_as":null,"requested_as":null,"via":"svirtd","pid":4242,
   "tty":"/dev/pts/3","op_id":6,"op":"start","vm":"alice-web","vm_uuid":"…",
   "verdict":"allowed","check":"rbac","rule":"alice has role web-operator: start on alice-*",
   "outcome":"pending","prev":"<64 hex>","hash":"<64 hex>"}
  {"v":1,"type":"outcome","seq":13,"ref":12,"time":"…","uid":1001,"user":"alice",
   "op_id":6,"op":"start","vm":"alice-web","vm_uuid":"…","outcome":"ok","prev":"…","hash":"…"}

``outcome`` is ``not-run`` on a denied decision, ``pending`` on an allowed one, and ``ok`` or
``error:<message>`` on outcome records.  The first record's ``prev`` is 64 zeros.

**Bounded by bytes, not by the caller's appetite.**  Every string field is clipped to
``MAX_FIELD_BYTES`` *as written* (after JSON escaping: a U+2028 costs six bytes, so clipping by
characters let a 4,000-character name become a 48 KB record).  Denied decisions -- the only
records a caller with no rights at all can cause -- go through a per-uid token bucket
(``DENIED_BURST`` at once, ``DENIED_PER_SECOND`` sustained); what the bucket drops is counted
and written as one ``suppressed`` record per uid at most every ``SUMMARY_EVERY`` seconds (and
at ``close()``), so a flood costs a few hundred bytes a second instead of filling the disk (on
a full disk every request of every user would be refused).  Dropping a *denied* record never
lets anything run unaudited: the request is refused either way.  Allowed decisions and
outcomes are never dropped; if they cannot be written the request is refused (fail closed).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import stat
import syslog as _syslog
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from secured_virt.fsutil import UnsafeFileError, open_secure_dir
from secured_virt.groupcommit import GroupCommit

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditLog",
    "AuditRef",
    "VerifyResult",
    "canonical_json",
    "read",
    "record_hash",
    "verify",
]

GENESIS = "0" * 64
RECORD_VERSION = 1
#: a string field may take this many bytes of the written (escaped) line
MAX_FIELD_BYTES = 1024
TRUNCATED = "...[truncated]"
#: the longest last line taken for a record when the chain's end is read back
MAX_RECORD_BYTES = 128 * 1024
#: an incomplete last line up to this long is cut off and kept in a ``recovered`` record
#: (base64: a third longer, still under MAX_RECORD_BYTES); a record, its fields clipped, is
#: shorter
MAX_TORN_BYTES = 64 * 1024
#: denied decisions per uid: this many at once, then this many a second; the rest summarised
DENIED_BURST = 60
DENIED_PER_SECOND = 2.0
#: a uid whose denials are being dropped gets a summary record at most this often
SUMMARY_EVERY = 10.0
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuditError(Exception):
    """The record could not be written durably; the operation must be refused."""


@dataclass(frozen=True, slots=True)
class AuditRef:
    """Handle for a written decision, to link its outcome to it."""

    seq: int
    hash: str
    summary: dict = field(default_factory=dict, compare=False)
    #: an allowed read's decision record, not written yet: ``record_outcome`` writes it and
    #: its outcome together, with one sync, before the reply leaves (see "Reads" above)
    unwritten: dict | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int  # records checked and found good (all of them when ok)
    first_bad: int | None  # line number of the first broken record
    message: str
    first_bad_seq: int | None = None


#: json.dumps with options builds a new encoder on every call; this one is built once
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode


def canonical_json(obj: dict) -> bytes:
    """The one serialisation that is hashed and written: sorted keys, no spaces, ASCII only
    (so no raw control or line-separator characters can ever split a record)."""
    return _CANONICAL(obj).encode()


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _utc_now() -> str:
    now = _dt.datetime.now(_dt.UTC)
    return now.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _escaped_len(ch: str) -> int:
    """Bytes ``ch`` takes in canonical_json (ensure_ascii): what the disk really pays."""
    o = ord(ch)
    if o < 0x20:
        return 2 if ch in "\b\f\n\r\t" else 6
    if ch in '"\\':
        return 2
    if o < 0x80:
        return 1
    return 6 if o < 0x10000 else 12


def _clip(value, limit: int = MAX_FIELD_BYTES):
    """A string cut so that its escaped form takes at most ``limit`` bytes (marker included).

    Why by bytes after escaping: one character may cost 1 to 12 bytes on disk, so a limit in
    characters is no limit on what a caller can make us write."""
    if not isinstance(value, str) or len(value) * 12 <= limit:
        return value
    head = value[:limit]  # every character costs at least one byte
    if len(head) == len(value) and len(json.dumps(head, ensure_ascii=True)) - 2 <= limit:
        return value
    budget, used, cut = limit - len(TRUNCATED), 0, 0
    for ch in head:
        used += _escaped_len(ch)
        if used > budget:
            break
        cut += 1
    return value[:cut] + TRUNCATED


def _normalise_outcome(outcome: str) -> str:
    text = str(outcome).strip()
    if text in ("ok", "not-run"):
        return text
    if text.startswith("error"):
        return "error:" + text[len("error") :].lstrip(": ").strip()
    return "error:" + text


_CTRL = re.compile(r"[\x00-\x1f\x7f]")


def _escape(text) -> str:
    """Control characters as #ooo (sudo's convention) so one record is one syslog line."""
    return _CTRL.sub(lambda m: f"#{ord(m.group()):03o}", str(text))


def _acting_as(ident) -> str | None:
    value = getattr(ident, "acting_as", None)
    if value is not None or hasattr(type(ident), "acting_as"):
        return value
    if ident.uid == 0 and not getattr(ident, "as_refused", False):
        return getattr(ident, "requested_as", None) or None
    return None


class _DenialLimiter:
    """Per-uid token bucket for denied decisions, with the counts of what it dropped.

    Thread-safe.  ``admit`` says whether a denied record may be written; a dropped one is
    counted (by operation and check, with a few sample VM names) until ``take_summaries``
    hands the counts over to be written as one ``suppressed`` record per uid."""

    MAX_SAMPLES = 5
    MAX_KEYS = 20

    def __init__(self, burst: int, per_second: float, clock=time.monotonic):
        self.burst = max(1, int(burst))
        self.per_second = float(per_second)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, list[float]] = {}  # uid -> [tokens, last refill]
        self._dropped: dict[int, dict] = {}

    def admit(self, uid: int, user, op, check, vm) -> bool:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(uid, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_second)
            if tokens >= 1.0:
                self._buckets[uid] = [tokens - 1.0, now]
                if len(self._buckets) > 4096:  # forget uids that have been quiet
                    self._prune(now)
                return True
            self._buckets[uid] = [tokens, now]
            d = self._dropped.get(uid)
            if d is None:
                d = self._dropped[uid] = {
                    "user": user,
                    "first": _utc_now(),
                    "n": 0,
                    "ops": Counter(),
                    "checks": Counter(),
                    "vms": [],
                }
            d["n"] += 1
            d["last"] = _utc_now()
            d["ops"][str(op)] += 1
            d["checks"][str(check)] += 1
            if len(d["vms"]) < self.MAX_SAMPLES and vm not in d["vms"]:
                d["vms"].append(vm)
            return False

    def pending(self) -> bool:
        with self._lock:
            return bool(self._dropped)

    def take_summaries(self) -> list[dict]:
        """The summary records of everything dropped so far (and forget the counts)."""
        with self._lock:
            dropped, self._dropped = self._dropped, {}
        return [self._summary(uid, d) for uid, d in sorted(dropped.items())]

    def _summary(self, uid: int, d: dict) -> dict:
        def top(counter: Counter) -> dict:
            items = counter.most_common(self.MAX_KEYS)
            out = {_clip(k, 128): v for k, v in items}
            rest = sum(counter.values()) - sum(v for _k, v in items)
            if rest:
                out["(other)"] = rest
            return out

        return {
            "type": "suppressed",
            "uid": uid,
            "user": d["user"],
            "verdict": "denied",
            "outcome": "not-run",
            "dropped": d["n"],
            "first": d["first"],
            "last": d["last"],
            "ops": top(d["ops"]),
            "checks": top(d["checks"]),
            "vm_samples": [_clip(v, 256) if isinstance(v, str) else v for v in d["vms"]],
            "rule": (
                f"{d['n']} denied decision(s) of uid {uid} were not written one by one: more "
                f"than {self.burst} at once or {self.per_second:g} a second"
            ),
        }

    def _prune(self, now: float) -> None:
        full = self.burst / self.per_second if self.per_second > 0 else 3600.0
        for uid in [u for u, (_t, last) in self._buckets.items() if now - last > full]:
            if uid not in self._dropped:
                del self._buckets[uid]


class _Pending:
    """One record waiting for the group commit: filled with ``rec`` or ``error`` by the
    writer of its batch (``_write_batch``).  With ``then``, an outcome record written right
    after it (its ``ref`` = this record's seq), filled in ``then_rec``: a read's decision and
    outcome, one wait for both."""

    __slots__ = ("error", "fields", "rec", "then", "then_rec")

    def __init__(self, fields: dict, then: dict | None = None):
        self.fields = fields
        self.then = then
        self.then_rec: dict | None = None
        self.rec: dict | None = None
        self.error: str | None = None


class _KeptFd:
    """The log's fd kept open between batches; closing twice is harmless (the number may
    belong to another file by then, so it is forgotten on the first close)."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int):
        self.fd: int | None = fd

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class WriteTimes:
    """How the group commit's writes went: every write counted, the last ``WINDOW`` kept with
    the records each carried and how long its write and sync took.

    Why: every allowed request waits for one of these syncs (two for an action, see "When a
    record is durable" in docs/audit-format.md), so their time is a floor under svirtd's
    latency that no CPU spent in Python explains.  An fdatasync that extends the file costs
    ~0.2 ms on an idle host but waits for the scheduler once the CPUs are busy (the kernel's
    writeback and our own thread must run); ``svirt-admin status`` shows it, so an operator
    can tell a slow disk or a saturated host from a slow daemon.  Only the writer of a batch
    adds (one at a time, under the group commit); reading a snapshot takes no lock."""

    WINDOW = 1024

    __slots__ = ("_recent", "_waits", "records", "writes")

    def __init__(self) -> None:
        self.writes = 0
        self.records = 0
        self._recent: deque[tuple[int, float]] = deque(maxlen=self.WINDOW)
        #: how long the last submissions waited until their records were on disk; added by
        #: every appending thread (a deque's append is atomic), so no total is kept
        self._waits: deque[float] = deque(maxlen=self.WINDOW)

    def add(self, records: int, seconds: float) -> None:
        self.writes += 1
        self.records += records
        self._recent.append((records, seconds))

    def waited(self, seconds: float) -> None:
        """One caller's records (a decision, an outcome, or both) took ``seconds`` from being
        handed to the group commit to being on disk: the write under way when they came, if
        any, their own batch's write and sync, and the wake-up after it."""
        self._waits.append(seconds)

    def snapshot(self) -> dict:
        """Totals, and over the recent writes: records per write and the sync's median, 99th
        percentile and longest time in milliseconds; over the recent submissions, the median,
        99th percentile and longest wait for the disk."""
        recent = list(self._recent)
        out: dict = {"writes": self.writes, "records": self.records}
        if recent:
            secs = sorted(s for _n, s in recent)
            out["recent"] = {
                "writes": len(recent),
                "records_per_write": round(sum(n for n, _s in recent) / len(recent), 1),
                "sync_ms_p50": _ms_at(secs, 0.5),
                "sync_ms_p99": _ms_at(secs, 0.99),
                "sync_ms_max": round(secs[-1] * 1000, 3),
            }
            waits = sorted(self._waits)
            if waits:
                out["recent"].update(
                    waits=len(waits),
                    wait_ms_p50=_ms_at(waits, 0.5),
                    wait_ms_p99=_ms_at(waits, 0.99),
                    wait_ms_max=round(waits[-1] * 1000, 3),
                )
        return out


def _ms_at(sorted_secs: list[float], q: float) -> float:
    return round(sorted_secs[min(len(sorted_secs) - 1, int(len(sorted_secs) * q))] * 1000, 3)


def _stat_key(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_nlink)


class AuditLog:
    """Appends hash-chained records to one log file; safe across threads and processes."""

    def __init__(
        self,
        path: str,
        *,
        use_syslog: bool = True,
        owner_uid: int = 0,
        syslog_ident: str = "secured-virt",
        denied_burst: int = DENIED_BURST,
        denied_per_second: float = DENIED_PER_SECOND,
        summary_every: float = SUMMARY_EVERY,
    ):
        self.path = os.path.abspath(path)
        self.use_syslog = use_syslog
        self.owner_uid = owner_uid
        self.syslog_ident = syslog_ident
        self._lock = threading.Lock()
        self._tail: tuple[int, int, int, int, str] | None = None  # dev, ino, size, seq, hash
        # group commit: one thread at a time writes every record queued meanwhile
        self._commit: GroupCommit[_Pending] = GroupCommit()
        self._kept: _KeptFd | None = None  # the open log, valid while _fd_key matches the paths
        self._fd_key: tuple | None = None
        self._limiter = _DenialLimiter(denied_burst, denied_per_second)
        self.summary_every = summary_every
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        #: the writes of this object's group commit (svirtd's status shows them)
        self.write_times = WriteTimes()

    @classmethod
    def from_config(cls, config) -> AuditLog:
        return cls(config.audit_log, use_syslog=config.audit_syslog)

    # -- the gate's interface -----------------------------------------------------------------
    def decision(self, ident, op, target, verdict, *, defer: bool = False) -> AuditRef:
        """Record a gate verdict (duck-typed Identity, Operation, Target, Verdict).
        ``defer``: an allowed read's record is written with its outcome (``record_outcome``),
        not now; the caller must not let anything leave before that (module docstring)."""
        return self.record_decision(
            defer=defer,
            uid=ident.uid,
            user=ident.user,
            acting_as=_acting_as(ident),
            requested_as=getattr(ident, "requested_as", None),
            via=getattr(ident, "via", None),
            pid=getattr(ident, "pid", None),
            tty=getattr(ident, "tty", None),
            op_id=getattr(op, "id", None),
            op=getattr(op, "name", str(op)),
            vm=getattr(target, "name", None),
            vm_uuid=getattr(target, "uuid", None),
            allowed=bool(verdict.allowed),
            check=verdict.check,
            rule=verdict.rule,
            realm=(getattr(target, "attrs", None) or {}).get("realm"),
            peer=getattr(ident, "peer", None),
            session=getattr(ident, "session", None),
        )

    def outcome(self, ref: AuditRef, outcome: str) -> AuditRef:
        return self.record_outcome(ref, outcome)

    # -- explicit interface -------------------------------------------------------------------
    def record_decision(
        self,
        *,
        uid: int,
        user: str,
        op: str,
        vm: str | None,
        allowed: bool,
        check: str,
        rule: str,
        op_id: int | None = None,
        vm_uuid: str | None = None,
        acting_as: str | None = None,
        requested_as: str | None = None,
        via: str | None = None,
        pid: int | None = None,
        tty: str | None = None,
        realm: str | None = None,
        peer: str | None = None,
        session: str | None = None,
        defer: bool = False,
    ) -> AuditRef:
        """Write one decision durably (raises AuditError if it cannot be written).  ``realm``:
        the management realm of the target (secured_virt.tenancy); the field is written only
        when there is one, so logs of hosts without realms are unchanged.  ``peer`` and
        ``session``: a remote front-end's client address and public session id
        (daemon.websessions), likewise written only when given."""
        fields = {
            "type": "decision",
            "uid": uid,
            "user": user,
            "acting_as": acting_as,
            "requested_as": requested_as,
            "via": via,
            "pid": pid,
            "tty": tty,
            "op_id": op_id,
            "op": op,
            "vm": vm,
            "vm_uuid": vm_uuid,
            "verdict": "allowed" if allowed else "denied",
            "check": check,
            "rule": rule,
            "outcome": "pending" if allowed else "not-run",
        }
        if realm:
            fields["realm"] = realm
        if peer is not None:
            fields["peer"] = peer
        if session is not None:
            fields["session"] = session
        summary = {k: _clip(fields[k]) for k in ("uid", "user", "op_id", "op", "vm", "vm_uuid")}
        if not allowed and not self._limiter.admit(uid, user, op, check, vm):
            self._schedule_summary()
            return AuditRef(0, "", summary)  # counted; written in the next summary record
        if defer and allowed:  # written with the outcome, before the reply (module docstring)
            return AuditRef(0, "", summary, unwritten=fields)
        rec = self.append(fields)
        return AuditRef(rec["seq"], rec["hash"], summary)

    # -- denied-record summaries --------------------------------------------------------------
    def flush_summaries(self) -> int:
        """Write one ``suppressed`` record per uid whose denied records were dropped; returns
        how many were written.  A failure is reported to syslog (the requests were refused
        anyway, so there is nothing left to refuse)."""
        written = 0
        for rec in self._limiter.take_summaries():
            try:
                self.append(rec)
                written += 1
            except AuditError:
                pass  # append() already told syslog what could not be written
        return written

    def _schedule_summary(self) -> None:
        with self._timer_lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.summary_every, self._timer_fired)
            self._timer.daemon = True
            self._timer.start()

    def _timer_fired(self) -> None:
        with self._timer_lock:
            self._timer = None
        self.flush_summaries()

    def close(self) -> None:
        """Write what is still only counted (svirtd calls this when it stops)."""
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush_summaries()
        with self._lock:
            kept, self._kept, self._fd_key = self._kept, None, None
        if kept is not None:
            kept.close()

    def record_outcome(self, ref: AuditRef, outcome: str) -> AuditRef:
        """Link the backend's result (``ok`` / ``error:<msg>``) to decision ``ref``."""
        fields = {"type": "outcome", "ref": ref.seq, **ref.summary}
        fields["outcome"] = _normalise_outcome(outcome)
        if ref.unwritten is not None:  # a read's decision: both records, one sync
            _decision, rec = self.append_pair(ref.unwritten, fields)
        else:
            rec = self.append(fields)
        return AuditRef(rec["seq"], rec["hash"], ref.summary)

    def append(self, fields: dict) -> dict:
        """Chain and write one record; returns it as written (with seq, time, prev, hash)."""
        return self._append(fields)[0]

    def append_pair(self, decision: dict, outcome: dict) -> tuple[dict, dict]:
        """Chain and write a decision and its outcome as two consecutive records, in one
        write and one sync (the outcome's ``ref`` is the decision's seq); both as written."""
        return self._append(decision, outcome)

    @staticmethod
    def _fields(fields: dict) -> dict:
        # _clip's own first test, inline: nearly every field is short or not a string
        short = MAX_FIELD_BYTES // 12
        fields = {
            k: _clip(v) if isinstance(v, str) and len(v) > short else v for k, v in fields.items()
        }
        for reserved in ("v", "seq", "time", "prev", "hash"):
            fields.pop(reserved, None)
        return fields

    def _append(self, fields: dict, then: dict | None = None) -> tuple[dict, dict | None]:
        fields = self._fields(fields)
        if then is not None:
            then = self._fields(then)
        mine = _Pending(fields, then)
        began = time.perf_counter()
        try:  # written by us with everything queued so far, or by the writer of our batch
            self._commit.submit(mine, self._write_batch)
        except Exception as exc:  # never leave a record's caller without an answer
            if mine.rec is None and mine.error is None:
                mine.error = f"cannot write the audit log {self.path}: {exc}"
        if mine.error is not None:
            self._syslog(fields, None, failure=mine.error)
            raise AuditError(mine.error)
        self.write_times.waited(time.perf_counter() - began)
        self._syslog(mine.rec, mine.rec["hash"])
        if mine.then_rec is not None:
            self._syslog(mine.then_rec, mine.then_rec["hash"])
        return mine.rec, mine.then_rec

    # -- internals ----------------------------------------------------------------------------
    def _open(self) -> int:
        directory, name = os.path.split(self.path)
        try:
            dfd = open_secure_dir(directory, 0o750, owner_uid=self.owner_uid, create_mode=0o700)
        except UnsafeFileError as exc:
            raise AuditError(f"audit log directory refused: {exc}") from None
        except OSError as exc:
            raise AuditError(f"audit log directory {directory}: {exc.strerror}") from None
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                fd = os.open(name, flags, dir_fd=dfd)
            except FileNotFoundError:
                fd = os.open(name, flags | os.O_CREAT, 0o600, dir_fd=dfd)
                os.fsync(dfd)  # a newly created log's directory entry must survive a crash too
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {self.path}: {exc.strerror}") from None
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            problem = None
            if not stat.S_ISREG(st.st_mode):
                problem = "is not a regular file"
            elif st.st_uid != self.owner_uid:
                problem = f"is owned by uid {st.st_uid}, should be {self.owner_uid}"
            elif stat.S_IMODE(st.st_mode) & 0o077:
                problem = f"has mode {stat.S_IMODE(st.st_mode):04o}, should be 0600"
            elif st.st_nlink != 1:
                problem = f"has {st.st_nlink} hard links, should have 1"
            if problem:
                raise AuditError(f"audit log {self.path} {problem}; refusing to write to it")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read_tail(self, fd: int, st: os.stat_result) -> tuple[int, str]:
        """(seq, hash) of the last record, read backwards from the end of the file."""
        cached = self._tail
        if cached and cached[:3] == (st.st_dev, st.st_ino, st.st_size):
            return cached[3], cached[4]
        if st.st_size == 0:
            return 0, GENESIS
        if os.pread(fd, 1, st.st_size - 1) != b"\n":
            raise AuditError(
                f"the audit log {self.path} ends with an incomplete record (interrupted write?);"
                f" refusing to extend a broken chain.  Run `svirt-admin audit verify`, keep a "
                f"copy of the log, and cut the incomplete last line off"
            )
        buf, pos = b"", st.st_size
        while True:
            step = min(8192, pos)
            pos -= step
            buf = os.pread(fd, step, pos) + buf
            cut = buf.rfind(b"\n", 0, len(buf) - 1)
            if cut >= 0:
                line = buf[cut + 1 :]
                break
            if pos == 0:
                line = buf
                break
            if len(buf) > MAX_RECORD_BYTES:
                raise AuditError(f"the last line of {self.path} is not an audit record")
        try:
            last = json.loads(line)
            seq, digest = last["seq"], last["hash"]
            if not isinstance(seq, int) or not _HEX64.fullmatch(digest):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise AuditError(
                f"the last line of {self.path} is not an audit record; run "
                f"`svirt-admin audit verify`"
            ) from None
        return seq, digest

    def _paths_key(self) -> tuple | None:
        """What the checks at open time saw of the directory and the file (None: gone)."""
        try:
            d = os.lstat(os.path.dirname(self.path))
            f = os.lstat(self.path)
        except OSError:
            return None
        return (d.st_dev, d.st_ino, d.st_mode, d.st_uid), _stat_key(f)

    def _checked_fd(self) -> int:
        """The open log, reopened with every check when the file or its directory changed."""
        key = self._paths_key()
        kept = self._kept
        if kept is not None and key is not None and key == self._fd_key:
            return kept.fd
        if kept is not None:
            self._kept = self._fd_key = None
            kept.close()
        fd = self._open()
        key = self._paths_key()
        st = os.fstat(fd)
        if key is not None and key[1][:2] == (st.st_dev, st.st_ino):
            self._kept, self._fd_key = _KeptFd(fd), key  # for the next batch
            # closed with the log object too, not only by close(): a forgotten AuditLog must
            # not hold its file system busy
            weakref.finalize(self, self._kept.close)
        return fd

    def _write_batch(self, batch: list[_Pending]) -> None:
        """As the writer of a group commit: chain, write and fdatasync every queued record at
        once; set each one's rec/error (an exception it lets through reaches every caller of
        the batch, ``_append`` makes it their AuditError)."""
        fd = None
        try:
            fd = self._checked_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._write_locked(fd, batch)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except AuditError as exc:
            why = str(exc)
        except OSError as exc:
            why = f"cannot write the audit log {self.path}: {exc.strerror or exc}"
        else:
            why = None
        finally:
            if fd is not None and (self._kept is None or fd != self._kept.fd):
                os.close(fd)
        if why is not None:
            for p in batch:
                if p.rec is None:
                    p.error = why

    def _write_locked(self, fd: int, batch: list[_Pending]) -> None:
        st = os.fstat(fd)
        torn = None
        cached = self._tail  # our own last write, whole, unless the file changed since
        ours = cached is not None and cached[:3] == (st.st_dev, st.st_ino, st.st_size)
        if not ours and _ends_mid_line(fd, st):
            torn = self._cut_torn_line(fd, st)  # AuditError: the batch is refused
            st = os.fstat(fd)
        seq, prev = self._read_tail(fd, st)  # AuditError: the batch is refused
        recs, lines = [], []
        if torn is not None:
            seq += 1
            cut_at, fragment = torn
            recovered = self._recovered_record(cut_at, fragment, seq, prev)
            prev = recovered["hash"]
            lines.append(canonical_json(recovered) + b"\n")
        for p in batch:
            seq += 1
            rec = {"v": RECORD_VERSION, **p.fields, "seq": seq, "time": _utc_now(), "prev": prev}
            rec["hash"] = prev = record_hash(rec)
            lines.append(canonical_json(rec) + b"\n")
            then = None
            if p.then is not None:  # the outcome right after its decision
                seq += 1
                then = {"v": RECORD_VERSION, **p.then, "ref": rec["seq"]}
                then.update(seq=seq, time=_utc_now(), prev=prev)
                then["hash"] = prev = record_hash(then)
                lines.append(canonical_json(then) + b"\n")
            recs.append((rec, then))
        data = b"".join(lines)
        began = time.perf_counter()
        self._write_synced(fd, st.st_size, data, torn[1] if torn is not None else b"")
        self._tail = (st.st_dev, st.st_ino, st.st_size + len(data), seq, prev)
        self.write_times.add(len(lines), time.perf_counter() - began)
        if torn is not None:
            self._syslog(recovered, recovered["hash"])
        for p, (rec, then) in zip(batch, recs, strict=True):
            p.rec, p.then_rec = rec, then

    def _write_synced(self, fd: int, size: int, data: bytes, cut: bytes = b"") -> None:
        """Append ``data`` to the log of ``size`` bytes and sync it.  If that fails, the file
        goes back to ``size`` bytes, and the bytes of a torn line cut off before the write
        (``cut``) back where they were, before AuditError is raised."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)  # the data and the new size: what a reader after a crash needs
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                if cut:
                    os.write(fd, cut)
                os.fsync(fd)
            self._tail = None
            raise AuditError(
                f"cannot write the audit log {self.path}: {exc.strerror or exc}"
            ) from None

    def recover(self) -> dict | None:
        """Cut off a torn last line now, not at the next append: svirtd does this at start-up,
        so after a crash ``audit verify`` is clean at once and syslog hears of the recovery
        when the daemon comes back, not at its first request.  Returns the ``recovered``
        record written, or None when the log ends in a whole line (or does not exist).
        Raises AuditError when the line cannot be cut (append-only) or the write fails (the
        file is then as it was)."""
        if not os.path.lexists(self.path):
            return None
        fd = self._open()  # an open file of its own: its flock excludes this process's writer
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            if not _ends_mid_line(fd, st):
                return None
            cut_at, fragment = self._cut_torn_line(fd, st)
            st = os.fstat(fd)
            seq, prev = self._read_tail(fd, st)
            rec = self._recovered_record(cut_at, fragment, seq + 1, prev)
            self._write_synced(fd, st.st_size, canonical_json(rec) + b"\n", fragment)
        finally:
            os.close(fd)  # and with it the flock
        self._syslog(rec, rec["hash"])
        return rec

    def _cut_torn_line(self, fd: int, st: os.stat_result) -> tuple[int, bytes]:
        """Cut off the incomplete last line a writer that stopped mid-write left behind (we
        hold the ``flock``, so that writer is gone); (offset it began at, its bytes)."""
        start = max(0, st.st_size - MAX_TORN_BYTES - 1)
        tail = os.pread(fd, st.st_size - start, start)
        newline = tail.rfind(b"\n")
        if newline < 0 and start > 0:
            raise AuditError(
                f"the audit log {self.path} ends with more than {MAX_TORN_BYTES} bytes that "
                f"are not a whole line: not an interrupted write of a record; refusing to "
                f"extend it.  Run `svirt-admin audit verify` and repair the log by hand"
            )
        cut_at = start + newline + 1
        fragment = tail[newline + 1 :]
        try:
            os.ftruncate(fd, cut_at)
        except OSError as exc:  # chattr +a: an append-only file cannot be cut
            raise AuditError(
                f"the audit log {self.path} ends with an incomplete record (interrupted "
                f"write?) and cannot be cut ({exc.strerror}); refusing to extend a broken "
                f"chain.  Run `svirt-admin audit verify`, keep a copy of the log, and cut the "
                f"incomplete last line off"
            ) from None
        self._tail = None
        return cut_at, fragment

    @staticmethod
    def _recovered_record(cut_at: int, fragment: bytes, seq: int, prev: str) -> dict:
        """The chained record that keeps a cut-off incomplete line, byte for byte."""
        rec = {
            "v": RECORD_VERSION,
            "type": "recovered",
            "uid": os.getuid(),
            "pid": os.getpid(),
            "rule": (
                "the log ended in an incomplete line, left by a writer that stopped in the "
                "middle of its write (kill -9, crash, power loss) before the line was on "
                "disk, so no caller was answered on it; the line was cut off and is kept here"
            ),
            "cut_at": cut_at,
            "torn_bytes": len(fragment),
            "torn_sha256": hashlib.sha256(fragment).hexdigest(),
            "torn_base64": base64.b64encode(fragment).decode("ascii"),
            "seq": seq,
            "time": _utc_now(),
            "prev": prev,
        }
        rec["hash"] = record_hash(rec)
        return rec

    def _syslog(self, rec: dict, digest: str | None, failure: str | None = None) -> None:
        if not self.use_syslog:
            return
        if rec.get("type") == "recovered":
            text = (
                f"RECOVERED seq={rec.get('seq')} an incomplete last line of "
                f"{rec.get('torn_bytes')} bytes (sha256 {str(rec.get('torn_sha256'))[:16]}) "
                f"was cut off at offset {rec.get('cut_at')} and kept in this record"
            )
            prio = _syslog.LOG_ALERT
        elif rec.get("type") == "suppressed":
            text = (
                f"SUPPRESSED seq={rec.get('seq', '-')} user={rec.get('user')} "
                f"uid={rec.get('uid')} dropped={rec.get('dropped')} denied decisions "
                f"from {rec.get('first')} to {rec.get('last')} ops={rec.get('ops')}"
            )
            prio = _syslog.LOG_ALERT
        elif rec.get("type") == "outcome":
            text = (
                f"outcome seq={rec.get('seq')} ref={rec.get('ref')} user={rec.get('user')} "
                f"op={rec.get('op')} vm={rec.get('vm')} result={rec.get('outcome')}"
            )
            prio = _syslog.LOG_INFO
        else:
            verdict = rec.get("verdict", "?")
            who = rec.get("user")
            if rec.get("acting_as"):
                who = f"{who} as={rec['acting_as']}"
            text = (
                f"{verdict.upper()} seq={rec.get('seq', '-')} user={who} uid={rec.get('uid')} "
                f"via={rec.get('via')} tty={rec.get('tty')} "
                + (f"peer={rec['peer']} " if rec.get("peer") else "")
                + f"op={rec.get('op')} "
                f"vm={rec.get('vm')} check={rec.get('check')} rule={rec.get('rule')}"
            )
            prio = _syslog.LOG_NOTICE if verdict == "allowed" else _syslog.LOG_ALERT
        if failure:
            text = f"NOT LOGGED, request refused ({failure}): {text}"
            prio = _syslog.LOG_ALERT
        elif digest:
            text += f" hash={digest[:16]}"
        line = f"{self.syslog_ident}: {_escape(text)}"
        _syslog.syslog(_syslog.LOG_AUTHPRIV | prio, line[:1000])


# -- reading and verifying --------------------------------------------------------------------


def verify(path: str, *, first_prev: str = GENESIS) -> VerifyResult:
    """Check the whole chain; report the first broken record by line number and seq.

    Detects an altered field (hash mismatch), a removed, inserted or reordered line (prev or
    seq mismatch), a truncated last line, and non-JSON lines.  ``first_prev`` lets a rotated
    log start from the last hash of its predecessor.
    """
    expected_prev, expected_seq, good = first_prev, None, 0
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        return VerifyResult(False, 0, None, f"{path}: cannot read: {exc.strerror}")
    with fh:
        for lineno, raw in enumerate(fh, 1):
            why, seq, digest = _check_line(raw, expected_prev, expected_seq, first_prev)
            if why:
                where = f"line {lineno}" + (f" (seq {seq})" if seq is not None else "")
                return VerifyResult(False, good, lineno, f"{path}: {where}: {why}", seq)
            expected_prev, expected_seq, good = digest, seq + 1, good + 1
    return VerifyResult(True, good, None, f"{path}: {good} records, chain intact")


def _ends_mid_line(fd: int, st: os.stat_result) -> bool:
    """Whether the open log ``fd`` (of stat ``st``) ends in part of a line."""
    return bool(st.st_size) and os.pread(fd, 1, st.st_size - 1) != b"\n"


def _check_line(
    raw: bytes, expected_prev: str, expected_seq: int | None, first_prev: str
) -> tuple[str | None, int | None, str]:
    """(problem or None, seq, hash) for one raw line of the log."""
    if not raw.endswith(b"\n"):
        return (
            "incomplete last line (no newline): truncated or interrupted write (if a writer "
            "was killed mid-write, the next append cuts it off into a 'recovered' record)",
            None,
            "",
        )
    try:
        rec = json.loads(raw)
    except ValueError:
        return "not a JSON record", None, ""
    if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int):
        return "not an audit record (no seq)", None, ""
    seq = rec["seq"]
    if rec.get("hash") != record_hash(rec):
        return "hash does not match the content: the record was altered", seq, ""
    if expected_seq is None:
        expected_seq = 1 if first_prev == GENESIS else seq
    if seq != expected_seq:
        return f"expected seq {expected_seq}: records were removed, inserted or reordered", seq, ""
    if rec.get("prev") != expected_prev:
        return (
            "prev does not match the hash of the record before it: records were removed, "
            "inserted or reordered",
            seq,
            "",
        )
    if rec.get("type") == "outcome" and not (
        isinstance(rec.get("ref"), int) and 0 < rec["ref"] < seq
    ):
        return "outcome refers to no earlier decision", seq, ""
    return None, seq, rec["hash"]


def _parse_time(value) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = _dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def read(
    path: str,
    user: str | None = None,
    vm: str | None = None,
    denied: bool | None = None,
    since=None,
) -> Iterator[dict]:
    """Records matching every given filter, oldest first (for ``svirt-admin audit show``).

    ``user`` matches the caller or the user acted as; ``denied=True`` yields denied decisions
    only, ``denied=False`` allowed decisions and outcomes; ``since`` is a datetime or an RFC
    3339 string.  Lines that are not records are skipped (``verify`` reports them).
    """
    cutoff = _parse_time(since) if since is not None else None
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            if user is not None and user not in (rec.get("user"), rec.get("acting_as")):
                continue
            if vm is not None and rec.get("vm") != vm:
                continue
            if denied is not None:
                is_denied = rec.get("verdict") == "denied"
                if is_denied != denied:
                    continue
            if cutoff is not None:
                try:
                    if _parse_time(rec.get("time")) < cutoff:
                        continue
                except (ValueError, TypeError):
                    continue
            yield rec
