"""sVirt category pairs on the real host: rebuilt from what runs, allocated under a host lock.

``policy.mcs`` draws unique pairs over a set of taken ones; this module says which are taken.
Several allocators run at once on one host (svirtd's threads, root's direct svirsh processes),
so each allocation happens under an flock on ``<state_dir>/categories.lock`` after the state
was rebuilt from scratch, the way ``enforcer.sync`` rebuilds the ACM state:

* **What runs is the truth.**  A pair is taken only while its VM runs: the running domains are
  listed from the hypervisor at every allocation, so a VM that stopped by itself (guest
  poweroff, crash, ``virsh destroy`` behind our back) gives its pair back without anyone
  calling :meth:`HostCategories.release`.
* **Where a running VM's pair is read.**  From the record this module wrote when it handed the
  pair out (``categories.json``, root's, 0600, replaced atomically), else from the VM's live
  metadata (``<svirt:categories>``, written by :meth:`HostCategories.confirm`).  The record
  comes first because the metadata can be stale: libvirt starts a domain with the persistent
  metadata copied to the live XML, and a label change that rewrote ``<svirt:vm>`` may have
  copied an old pair there.  The metadata alone still suffices when the record is gone (the
  state directory was wiped), so a pair in use is never handed out twice.
* **In flight.**  Between the allocation and the moment the domain runs, its record is what
  keeps the pair taken; a record whose domain does not run is kept only while the process that
  made it is alive (pid and start time, so a recycled pid does not count) and for at most
  ``ttl`` seconds, so a crashed svirsh cannot leak pairs.

**Held in memory between allocations.**  Rebuilding lists every running domain and reads
its metadata, which made the lock the bottleneck of a loaded svirtd (one start at a time, a
rebuild each).  So the rebuilt state (records, running pairs, allocator) is kept by the
object that made it and reused under the lock as long as nobody else changed it: every save
of the record file (by any process, all under this lock) writes a fresh random *generation*
into the lock file, and the state is reused only while that generation, the record file's
``lstat`` (inode, mode, owner, links, size, times) and the realms' categories are what this
object saw last, and for at most ``refresh`` seconds; otherwise it is rebuilt from what runs,
as before.  Root's direct svirsh (a new process, an empty cache) always rebuilds, and its
saves make svirtd rebuild next time, so the two never hand out one pair twice.  A reused
state errs only on the safe side: a VM that stopped keeps its pair until the next rebuild
(at most ``refresh`` seconds, or at once when no pair is free).

**Several changes per lock.**  Threads that reserve, confirm or release while another one
holds the lock queue their changes; the next holder applies them all under one lock, one
state check and one save, the audit log's group commit (``secured_virt.groupcommit``, which
both use).  Each call still returns only once its change is in the record file.  The
hypervisor calls of a confirm (the pair into the live metadata) happen outside the lock,
which only guards the records.

**Confirmed later.**  Marking a record confirmed once its VM runs does not wait for the lock:
the change is queued and applied, in order, by the next batch (or before a rebuild of this
object's: ``sync``, ``running``).  Until then the file shows the record in flight, which only
errs on the safe side: a record in flight is kept while its VM runs (like a confirmed one)
and, once the VM stopped, while the process that made it lives and at most ``ttl`` seconds —
its pair stays taken a little longer, it is never handed out twice.  A process that ends with
a confirmation still queued (root's direct svirsh) leaves a record whose owner is dead, which
a rebuild treats exactly as a confirmed one.  What it saves: one of the three waits of every
start (the record in flight before the hypervisor call, and the audit's two) and one save.

Lock order: a caller that holds the ACM lock (``AcmEnforcer.exclusive``) may take this one
inside it, never the other way round.  The lock is re-entrant within a thread.

The service calls, for start/create/restore (and snapshot-revert of a running snapshot)::

    with host_categories.instantiating(uuid, name, realm) as pair:
        backend.start(name)          # or create / restore

and :meth:`HostCategories.release` at stop/destroy/save (harmless if the VM already stopped).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

from policy import mcs
from secured_virt.backends.base import BackendError, NoSuchDomain
from secured_virt.confinement import vmmeta
from secured_virt.groupcommit import GroupCommit, GroupCommitAborted

FILE = "categories.json"
LOCK = "categories.lock"
#: how long an unconfirmed record survives while its domain does not run (a start's budget)
RESERVATION_TTL = 600.0
#: how long a state kept in memory is reused before it is rebuilt from what runs anyway
REFRESH = 2.0
#: bytes of the generation written into the lock file at every save
_GEN_BYTES = 48
_MAX_FILE = 16 * 1024 * 1024


class CategoryStateError(Exception):
    """The category state cannot be trusted or reached; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Record:
    """One pair handed out: to whom (the VM's UUID as key, its name and realm), by which
    process (pid and its start time), when, and whether the domain was seen running with it."""

    key: str
    name: str
    pair: str
    realm: str | None
    pid: int
    pid_start: str
    created: float
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class Running:
    """A running domain as the rebuild saw it."""

    uuid: str
    name: str
    pair: mcs.CategoryPair | None
    realm: str | None
    source: str  # "record", "metadata" or "none"


class _Change:
    """One change to the records waiting for the lock: ``fn(txn)`` and its result or its own
    error, set by the thread that applied its batch (``HostCategories._apply_batch``)."""

    __slots__ = ("error", "fn", "result")

    def __init__(self, fn):
        self.fn = fn
        self.result = None
        self.error: BaseException | None = None


class _Txn:
    """The records one batch of changes works on, under the lock; ``kept``: they come from
    the state kept in memory, not from a rebuild."""

    __slots__ = ("dirty", "host", "kept", "records")

    def __init__(self, host: HostCategories, records: dict[str, Record], kept: bool):
        self.host = host
        self.records = records
        self.kept = kept
        self.dirty = False

    def rebuild(self) -> None:
        """What runs now, with this batch's changes so far saved first (they are kept as
        in-flight records of this process)."""
        if self.dirty:
            self.host._save(self.records)
            self.dirty = False
        self.records = dict(self.host._rebuild()[0])
        self.kept = False


def _proc_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), '' if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return ""
    return data.rsplit(b")", 1)[-1].split()[19].decode()


_RENAME_EXCHANGE = 2  # renameat2(2)
_exchange_fn: list = []  # [the libc function, or None where there is none]
_tmp_serial = itertools.count(1)


def _exchange(dfd: int, a: str, b: str) -> bool:
    """Swap the names ``a`` and ``b`` in the directory ``dfd`` (renameat2 RENAME_EXCHANGE);
    False when the kernel, the C library or the filesystem cannot, or ``b`` does not exist."""
    import ctypes

    if not _exchange_fn:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):
            fn = None
        else:
            c_int, c_str = ctypes.c_int, ctypes.c_char_p
            fn.argtypes = [c_int, c_str, c_int, c_str, ctypes.c_uint]
            fn.restype = c_int
        _exchange_fn.append(fn)
    fn = _exchange_fn[0]
    if fn is None:
        return False
    if fn(dfd, os.fsencode(a), dfd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _replace_file(path: str, data: bytes) -> None:
    """``path`` replaced atomically by a new file (mode 0600, ours) holding ``data``; not
    synced.

    Why not a plain rename over the old file: ext4 (auto_da_alloc) then forces the new file's
    blocks out before the rename returns, 0.1-5 ms on this host's busy disk, under the lock
    every start waits for.  The names are swapped instead (RENAME_EXCHANGE: just as atomic,
    a reader sees the old file or the new one) and the old file, now under the temporary
    name, is removed.  The price is what ``durable=False`` already accepted: after a host
    crash the new file may be empty, which reads as no records (nothing runs after a crash).
    Where the exchange is not available it is the plain rename."""
    directory, name = os.path.split(path)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    tmp = f".{name}.tmp-{os.getpid()}-{next(_tmp_serial)}"
    try:
        with contextlib.suppress(FileNotFoundError):  # left by a crashed process of our pid
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dfd,
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        if _exchange(dfd, tmp, name):
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)  # the previous version
        else:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    finally:
        os.close(dfd)


def _record_text(key: str, rec: Record) -> str:
    """``"key":{record}`` as it stands in the record file (compact JSON, fields in order)."""
    fields = {f: getattr(rec, f) for f in Record.__slots__}
    return json.dumps(key) + ":" + json.dumps(fields, separators=(",", ":"))


def _default_realm_of(meta: vmmeta.VmMeta) -> str | None:
    return getattr(meta, "realm", None)


class HostCategories:
    """The host's sVirt category pairs: see the module docstring."""

    def __init__(
        self,
        state_dir: str,
        backend_getter: Callable,
        *,
        realm_categories: Mapping[str, int] | Callable[[], Mapping[str, int]] | None = None,
        realm_of: Callable[[vmmeta.VmMeta], str | None] = _default_realm_of,
        categories: int = mcs.MCS_CATS,
        ttl: float = RESERVATION_TTL,
        exclude: tuple[str, ...] = ("Domain-0",),
        refresh: float = REFRESH,
    ):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, FILE)
        self._backend = backend_getter
        self._realm_categories = realm_categories
        self._realm_of = realm_of
        self.categories = categories
        self.ttl = ttl
        self.exclude = frozenset(exclude)
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        self._thread_lock = threading.RLock()
        self._held = threading.local()
        self.allocator = mcs.PairAllocator(categories)
        self.last_problems: list[str] = []
        self.refresh = refresh
        #: the state kept between allocations (see the module docstring): the live records,
        #: the generation and record-file stat they were valid for, and when they were rebuilt
        self._records: dict[str, Record] | None = None
        self._seen: tuple | None = None
        self._rebuilt_at = 0.0
        self._lock_fd: int | None = None
        self._my_start: tuple[int, str] = (0, "")
        self.rebuilds = 0  # how many times the state was rebuilt from what runs (status, tests)
        self._changes: GroupCommit[_Change] = GroupCommit()  # see _apply
        self._token = (os.urandom(8), itertools.count(1))
        #: confirmations waiting for the next change of the records ("Confirmed later")
        self._later: list[Callable[[_Txn], None]] = []
        self._later_lock = threading.Lock()
        #: key -> (record, its text in the file) as last saved (see _save)
        self._texts: dict[str, tuple[Record, str]] = {}

    # -- lock ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Host-wide: nobody else allocates or releases meanwhile (flock + a thread lock)."""
        with self._thread_lock:
            if getattr(self._held, "depth", 0):
                self._held.depth += 1
                try:
                    yield
                finally:
                    self._held.depth -= 1
                return
            try:
                fd = os.open(
                    os.path.join(self.state_dir, LOCK),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                    0o600,
                )
            except OSError as exc:
                raise CategoryStateError(
                    f"cannot open the category lock {os.path.join(self.state_dir, LOCK)}: "
                    f"{exc.strerror} (it must be a regular file, not a link)"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._held.depth = 1
                self._lock_fd = fd
                try:
                    yield
                finally:
                    self._held.depth = 0
                    self._lock_fd = None
            finally:
                os.close(fd)

    # -- the state kept between allocations ------------------------------------------------
    def _file_key(self) -> tuple | None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        return (
            st.st_dev,
            st.st_ino,
            st.st_mode,
            st.st_uid,
            st.st_nlink,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )

    def _generation(self) -> tuple:
        """Under the lock: what says whether anybody changed the state since we saw it."""
        token = os.pread(self._lock_fd, _GEN_BYTES, 0) if self._lock_fd is not None else b""
        return token, self._file_key()

    def _bump(self) -> bytes:
        """A new generation after a save: other holders of a kept state rebuild theirs.  Unique
        without asking the kernel for randomness each time: this object's random prefix (and
        pid), and a counter."""
        prefix, counter = self._token
        token = f"{prefix.hex()}:{os.getpid()}:{next(counter)}".encode()[:_GEN_BYTES]
        token = token.ljust(_GEN_BYTES, b"-")
        fd = self._lock_fd
        if fd is not None:
            os.pwrite(fd, token, 0)
        else:  # a save outside the lock (tests): still tell everyone
            with contextlib.suppress(OSError):
                fd = os.open(
                    os.path.join(self.state_dir, LOCK),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                    0o600,
                )
                try:
                    os.pwrite(fd, token, 0)
                finally:
                    os.close(fd)
        return token

    def _state(self) -> tuple[dict[str, Record], bool]:
        """Under the lock: (a copy of the live records, whether it was kept rather than
        rebuilt), with the allocator set to them — the kept state when nobody changed anything
        since, else one rebuilt from what runs."""
        if (
            self._records is not None
            and time.monotonic() - self._rebuilt_at < self.refresh
            and self._generation() == self._seen
            and self._realm_map() == self.allocator.realm_categories
        ):
            return dict(self._records), True
        return dict(self._rebuild()[0]), False

    def _keep(self, records: dict[str, Record], token: bytes | None = None) -> None:
        """Remember ``records`` as the state of the generation now on disk (``token``: the
        generation this object just wrote)."""
        self._records = records
        if self._lock_fd is None:
            self._seen = None
        elif token is None:
            self._seen = self._generation()
        else:
            self._seen = (token, self._file_key())

    # -- the record file -------------------------------------------------------------------
    def _load(self) -> dict[str, Record]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CategoryStateError(
                f"cannot read {self.path}: {exc.strerror}; it must be a regular file"
            ) from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode):
                raise CategoryStateError(
                    f"{self.path} must be a regular file of uid {os.geteuid()}, writable by "
                    "nobody else; refusing to trust the category pairs it records (remove it: "
                    "the pairs of running VMs are read back from their live metadata)"
                )
            raw = fh.read(_MAX_FILE + 1)
        if not raw:  # replaced unsynced just before the host crashed: nothing ran since
            return {}
        try:
            data = json.loads(raw)
            if len(raw) > _MAX_FILE or not isinstance(data, dict):
                raise ValueError("expected an object of key -> record")
            out = {}
            for key, rec in data.items():
                r = Record(**rec)
                mcs.CategoryPair.parse(r.pair)
                out[key] = r
            return out
        except (ValueError, TypeError) as exc:
            raise CategoryStateError(
                f"{self.path} is damaged ({exc}); remove it: the pairs of running VMs are "
                "read back from their live metadata"
            ) from None

    def _save(self, records: Mapping[str, Record]) -> None:
        # the file is one JSON object, key -> record, keys sorted; each record's text is
        # kept from the save before and made again only for a record object not seen then
        # (a save follows every start, and rebuilding every record's dict and text was most
        # of a start's CPU under the lock: records are frozen, so the same object, the same
        # text)
        before, texts = self._texts, {}
        for key in sorted(records):
            rec = records[key]
            kept = before.get(key)
            if kept is None or kept[0] is not rec:
                kept = (rec, _record_text(key, rec))
            texts[key] = kept
        self._texts = texts
        data = "{" + ",".join(t for _r, t in texts.values()) + "}"
        # atomic but not synced: after a crash what runs is the truth again (the live metadata
        # keeps every running VM's pair), and the starts that were in flight died with it; a
        # sync per start made the categories lock the bottleneck of a loaded svirtd
        _replace_file(self.path, data.encode())
        self._keep(dict(records), self._bump())

    # -- what runs -------------------------------------------------------------------------
    def _realm_map(self) -> Mapping[str, int]:
        rc = self._realm_categories
        return dict((rc() if callable(rc) else rc) or {})

    def _running_domains(self) -> list[tuple[str, str, vmmeta.VmMeta]]:
        backend = self._backend()
        out = []
        for d in backend.list_domains(include_inactive=False):
            if d.name in self.exclude:
                continue
            try:
                meta = vmmeta.parse(backend.get_metadata(d.name, vmmeta.NS))
            except NoSuchDomain:
                continue  # it stopped while we looked
            out.append((d.uuid or f"name:{d.name}", d.name, meta))
        return out

    def _rebuild(self) -> tuple[dict[str, Record], list[Running]]:
        """Under the lock: the live records and the running VMs, and the allocator set to
        them.  Records of VMs that no longer run (or never started) are dropped."""
        records = self._load()
        try:
            domains = self._running_domains()
        except BackendError as exc:
            raise CategoryStateError(
                f"cannot list the running domains to allocate a category pair: {exc}"
            ) from None
        run_keys = {uuid for uuid, _n, _m in domains}
        now = time.time()
        starts: dict[int, str] = {}  # one /proc read per owner process, not per record
        kept: dict[str, Record] = {}
        for key, rec in records.items():
            if key in run_keys:
                kept[key] = rec
            elif not rec.confirmed and now - rec.created < self.ttl and rec.pid_start:
                if rec.pid not in starts:
                    starts[rec.pid] = _proc_start(rec.pid)
                if starts[rec.pid] == rec.pid_start:
                    kept[key] = rec
        running: list[Running] = []
        holders: list[mcs.Holder] = []
        problems: list[str] = []
        for uuid, name, meta in domains:
            realm = self._realm_of(meta)
            rec = kept.get(uuid)
            pair, source = None, "none"
            if rec is not None:
                pair, source = mcs.CategoryPair.parse(rec.pair), "record"
                realm = realm if realm is not None else rec.realm
            elif meta.categories:
                try:
                    pair, source = mcs.CategoryPair.parse(meta.categories), "metadata"
                except mcs.McsError as exc:
                    problems.append(f"{name}: its metadata names a bad category pair: {exc}")
            running.append(Running(uuid, name, pair, realm, source))
            if pair is not None:
                holders.append(mcs.Holder(uuid, pair, realm))
        for key, rec in kept.items():  # in flight: allocated, not running yet
            if key not in run_keys:
                holders.append(mcs.Holder(key, mcs.CategoryPair.parse(rec.pair), rec.realm))
        self.allocator = mcs.PairAllocator(self.categories, self._realm_map())
        problems.extend(self.allocator.rebuild(holders))
        self.last_problems = problems
        self.rebuilds += 1
        self._rebuilt_at = time.monotonic()
        if kept != records:
            self._save(kept)
        else:
            self._keep(dict(kept))
        return kept, running

    # -- the service's calls ---------------------------------------------------------------
    def reserve(self, key: str, name: str, realm: str | None = None) -> mcs.CategoryPair:
        """Allocate the pair ``key`` (the VM's UUID) will run with, before the hypervisor call.

        A key that already holds a pair (it runs, or a start is in flight) keeps it.  Raises
        ``mcs.CategoriesExhausted`` when no pair is free, ``CategoryStateError`` when the state
        cannot be read (fail closed: no pair is handed out blind)."""
        return self._reserve(key, name, realm)[0]

    def _reserve(
        self, key: str, name: str, realm: str | None
    ) -> tuple[mcs.CategoryPair, bool, Record | None]:
        """(pair, whether this call created the record, the confirmed record it replaced).

        A confirmed record of ``key`` (its VM ran; a kept state cannot tell whether it still
        does) is replaced by an in-flight one, so that another process rebuilding meanwhile
        keeps the pair taken while this start has not made the VM run yet; if the start
        fails, ``instantiating`` puts the confirmed record back."""
        if not key:
            raise ValueError("a category pair is reserved for a VM's UUID; none was given")

        def change(txn: _Txn):
            try:
                pair = self.allocator.allocate(key, realm)
            except mcs.CategoriesExhausted:
                if not txn.kept:
                    raise
                # a kept state may still count VMs that stopped since: ask what runs, once
                txn.rebuild()
                pair = self.allocator.allocate(key, realm)
            rec = txn.records.get(key)
            new = rec is None or rec.pair != str(pair)
            replaced = rec if rec is not None and not new and rec.confirmed else None
            if new or replaced is not None:
                txn.records[key] = Record(
                    key=key,
                    name=name,
                    pair=str(pair),
                    realm=realm,
                    pid=os.getpid(),
                    pid_start=self._own_start(),
                    created=time.time(),
                )
                txn.dirty = True
            return pair, new, replaced

        return self._apply(change)

    def _own_start(self) -> str:
        pid = os.getpid()
        if self._my_start[0] != pid:
            self._my_start = (pid, _proc_start(pid))
        return self._my_start[1]

    def _put_back(self, rec: Record) -> None:
        """A failed start of a VM whose record was confirmed: the record as it was."""

        def change(txn: _Txn) -> None:
            mine = txn.records.get(rec.key)
            if mine is not None and mine.pair == rec.pair and not mine.confirmed:
                txn.records[rec.key] = rec
                txn.dirty = True

        self._apply(change)

    def confirm(self, name: str, key: str | None = None) -> mcs.CategoryPair | None:
        """The domain runs now: write its pair into its live metadata (for dominfo and for a
        rebuild without the record) and mark the record confirmed.  None if ``name`` holds no
        record (nothing was reserved for it)."""

        def find(txn: _Txn) -> Record | None:
            rec = txn.records.get(key) if key else None
            if rec is None:
                rec = next((r for r in txn.records.values() if r.name == name), None)
            return rec

        rec = self._apply(find)
        if rec is None:
            return None
        pair = mcs.CategoryPair.parse(rec.pair)
        self._confirm(name, rec.key, pair)
        return pair

    def _confirm(self, name: str, key: str, pair: mcs.CategoryPair) -> None:
        """The pair into the live metadata (a hypervisor call: outside the lock, which only
        guards the records), then the record marked confirmed by the next batch (module
        docstring, "Confirmed later")."""
        backend = self._backend()
        meta = vmmeta.parse(backend.get_metadata(name, vmmeta.NS))
        backend.set_metadata(
            name,
            replace(meta, categories=str(pair)).to_xml(),
            vmmeta.KEY,
            vmmeta.NS,
            live=True,
            config=False,
        )

        def change(txn: _Txn) -> None:
            rec = txn.records.get(key)
            if rec is not None and rec.pair == str(pair) and not rec.confirmed:
                txn.records[key] = replace(rec, confirmed=True)
                txn.dirty = True

        self._apply_later(change)

    def release(self, key: str) -> mcs.CategoryPair | None:
        """Drop the record of ``key`` (at stop, destroy, save, or when a start failed).  If
        the VM still runs, its live metadata keeps the pair taken."""

        def change(txn: _Txn) -> mcs.CategoryPair | None:
            rec = txn.records.pop(key, None)
            if rec is None:
                return None
            # the allocator keeps the pair until the next rebuild: the VM may still run with
            # it (a create whose UUID was unknown before), and only a rebuild can tell
            txn.dirty = True
            return mcs.CategoryPair.parse(rec.pair)

        return self._apply(change)

    @contextlib.contextmanager
    def instantiating(self, key: str, name: str, realm: str | None = None):
        """``reserve`` before, ``confirm`` after a successful hypervisor call, ``release`` if
        it raised: the pair is never left behind by a start that failed — unless the pair was
        not this call's (the VM already ran with it, e.g. a second ``start`` that libvirt
        refused), which stays.  A failed ``confirm`` does not turn a start that happened into
        an error: the record keeps the pair taken while the VM runs; only dominfo misses it."""
        pair, new, replaced = self._reserve(key, name, realm)
        try:
            yield pair
        except BaseException:
            with contextlib.suppress(CategoryStateError, OSError):
                if new:
                    self.release(key)
                elif replaced is not None:
                    self._put_back(replaced)
            raise
        try:
            self._confirm(name, key, pair)
        except (BackendError, CategoryStateError, OSError) as exc:
            logging.getLogger(__name__).warning(
                "%s runs with category pair %s, but it could not be written to its live "
                "metadata: %s",
                name,
                pair,
                exc,
            )

    # -- changes to the records, several per lock (see _Change) ------------------------------
    def _apply(self, fn):
        """Run ``fn(txn)`` on the records under the lock and save them if it changed them;
        its result, or its exception.  Threads that arrive while another one holds the lock
        queue their changes, and the next holder applies all of them under one lock, one
        state check and one save (``secured_virt.groupcommit``, as the audit log's group
        commit): each call still returns only once its change is in the record file, and the
        lock is taken once per batch rather than once per start."""
        try:
            mine = self._changes.submit(_Change(fn), self._apply_batch)
        except GroupCommitAborted as exc:  # the thread applying our batch was interrupted
            raise CategoryStateError(f"the category records were not changed: {exc}") from None
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _apply_later(self, fn) -> None:
        """Queue ``fn(txn)`` for the next time the records are changed or rebuilt, without
        waiting for it (a confirmation: see the module docstring, "Confirmed later")."""
        with self._later_lock:
            self._later.append(fn)

    def _apply_queued(self, txn: _Txn) -> None:
        """Under the lock: the changes queued by ``_apply_later``, in the order they came.
        Each is a confirmation, which refuses nothing; one that raises is dropped (its record
        stays in flight: the safe side)."""
        with self._later_lock:
            later, self._later = self._later, []
        for fn in later:
            with contextlib.suppress(Exception):
                fn(txn)

    def _flush_queued(self) -> None:
        """Under the lock: save the queued changes now (before a rebuild reads the file): a
        batch of no changes of its own (the lock is re-entrant)."""
        if self._later:
            self._apply_batch([])

    def _apply_batch(self, batch: list[_Change]) -> None:
        """The leader's turn: one lock, one state check, the queued confirmations and then
        every change of ``batch`` in order, one save.  A change's own refusal (exhausted, ...)
        is that change's error; anything raised here (no lock, no state, no save) fails every
        change of the batch."""
        with self.locked():
            records, kept = self._state()
            txn = _Txn(self, records, kept)
            self._apply_queued(txn)
            for ch in batch:
                try:
                    ch.result = ch.fn(txn)
                except Exception as exc:  # this change's own refusal
                    ch.error = exc
            if txn.dirty:
                self._save(txn.records)

    # -- questions -------------------------------------------------------------------------
    def sync(self) -> list[str]:
        """Rebuild now; the irregularities found (two VMs on one pair, a realm category held
        outside its realm), each a sentence for the log."""
        with self.locked():
            self._flush_queued()
            self._rebuild()
            return list(self.last_problems)

    def running(self) -> list[Running]:
        """Every running VM with the pair it holds and where that was read."""
        with self.locked():
            self._flush_queued()
            return self._rebuild()[1]

    def pair_of(self, name: str) -> mcs.CategoryPair | None:
        """The pair a running VM holds (for dominfo), None if it holds none or does not run."""
        for r in self.running():
            if r.name == name:
                return r.pair
        return None

    def new_realm_category(self) -> int:
        """A category for a new realm that no realm owns and no running VM holds (the realm
        code stores it; pass the realms' categories back in ``realm_categories``)."""
        with self.locked():
            self._flush_queued()
            self._rebuild()
            held = [h.pair for h in self.allocator.holders()]
            return mcs.choose_realm_category(self._realm_map(), held, self.categories)
