"""shype.categories on a real libvirt (the test driver): pairs are rebuilt from what really
runs, kept in the live metadata, released when a domain stops (even behind our back), never
handed out twice — also by 1,000 concurrent allocations from threads and processes on one
state directory — and a state file that cannot be trusted stops allocation (fail closed)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from policy import mcs
from secured_virt.backends.base import BackendError
from secured_virt.backends.libvirt_backend import LibvirtBackend
from secured_virt.confinement import vmmeta
from secured_virt.shype import categories as hc
from secured_virt.shype.categories import CategoryStateError, HostCategories

HERE = Path(__file__).resolve().parent
CATS = 64


def domain_xml(name: str, uid: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><uuid>{uid}</uuid>"
        "<memory>8192</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )


@pytest.fixture
def backend():
    be = LibvirtBackend("test:///default")
    yield be
    be.close()


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "acm"
    d.mkdir(mode=0o755)
    return d


def start(host: HostCategories, backend, name: str, realm=None, persistent=False):
    uid = str(uuid.uuid4())
    with host.instantiating(uid, name, realm) as pair:
        if persistent:
            backend.define(domain_xml(name, uid))
            backend.start(name)
        else:
            backend.create(domain_xml(name, uid))
    return uid, pair


def test_a_started_vm_holds_its_pair_in_its_live_metadata_only(backend, state):
    host = HostCategories(str(state), lambda: backend)
    uid, pair = start(host, backend, "web", persistent=True)
    meta = vmmeta.parse(backend.get_metadata("web", vmmeta.NS))
    assert meta.categories == str(pair)
    assert vmmeta.parse(backend.get_metadata("web", vmmeta.NS, config=True)).categories is None
    assert host.pair_of("web") == pair
    rec = json.loads((state / hc.FILE).read_text())[uid]
    assert rec["pair"] == str(pair) and rec["confirmed"] is True
    assert oct((state / hc.FILE).stat().st_mode & 0o777) == "0o600"
    backend.destroy("web")
    backend.undefine("web")


def test_a_vm_that_stops_behind_our_back_gives_its_pair_back(backend, state):
    """No release call: the domain just is not running any more at the next rebuild."""
    host = HostCategories(str(state), lambda: backend)
    uid, _pair = start(host, backend, "gone")
    backend.destroy("gone")  # not through the service
    assert [r.name for r in host.running()] == ["test"]
    assert uid not in json.loads((state / hc.FILE).read_text())


def test_metadata_alone_keeps_a_pair_taken_when_the_records_are_lost(backend, state):
    host = HostCategories(str(state), lambda: backend, categories=8)
    _uid, held = start(host, backend, "keeper")
    (state / hc.FILE).unlink()  # the state directory was wiped
    others = {host.reserve(f"k{i}", f"k{i}") for i in range(27)}  # C(8,2) = 28, one held
    assert held not in others and len(others) == 27
    with pytest.raises(mcs.CategoriesExhausted):
        host.reserve("one-more", "one-more")
    assert [(r.name, r.source) for r in host.running() if r.name == "keeper"] == [
        ("keeper", "metadata")
    ]
    backend.destroy("keeper")


def test_the_record_wins_over_a_stale_pair_in_the_metadata(backend, state):
    """libvirt copies the persistent metadata into the live XML at start: an old pair there
    must not be taken for the VM's real one."""
    host = HostCategories(str(state), lambda: backend)
    uid = str(uuid.uuid4())
    backend.define(domain_xml("stale", uid))
    backend.set_metadata(
        "stale", vmmeta.VmMeta(categories="c1,c2").to_xml(), vmmeta.KEY, vmmeta.NS, live=False
    )
    pair = host.reserve(uid, "stale")
    backend.start("stale")
    (r,) = [r for r in host.running() if r.name == "stale"]
    assert (r.pair, r.source) == (pair, "record")
    host.confirm("stale", uid)
    assert vmmeta.parse(backend.get_metadata("stale", vmmeta.NS)).categories == str(pair)
    backend.destroy("stale")
    backend.undefine("stale")


def test_a_failed_start_releases_its_pair(backend, state):
    host = HostCategories(str(state), lambda: backend)
    with pytest.raises(RuntimeError), host.instantiating("u-1", "never") as pair:
        assert json.loads((state / hc.FILE).read_text())["u-1"]["pair"] == str(pair)
        raise RuntimeError("the hypervisor said no")
    assert json.loads((state / hc.FILE).read_text()) == {}


def test_in_flight_records_expire_with_their_process_or_their_time(backend, state):
    host = HostCategories(str(state), lambda: backend, ttl=60)
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()
    now = time.time()
    me = os.getpid()
    recs = {
        "dead-owner": hc.Record("dead-owner", "a", "c1,c2", None, gone.pid, "1", now),
        "too-old": hc.Record("too-old", "b", "c3,c4", None, me, hc._proc_start(me), now - 61),
        "in-flight": hc.Record("in-flight", "c", "c5,c6", None, me, hc._proc_start(me), now),
        "recycled-pid": hc.Record("recycled-pid", "d", "c7,c8", None, me, "12345", now),
    }
    host._save(recs)
    host.sync()
    assert set(json.loads((state / hc.FILE).read_text())) == {"in-flight"}


@pytest.mark.parametrize("damage", ["garbage", "mode", "owner", "symlink", "bad-pair"])
def test_a_state_file_that_cannot_be_trusted_stops_allocation(backend, state, damage):
    path = state / hc.FILE
    if damage == "garbage":
        path.write_text("{not json")
    elif damage == "bad-pair":
        rec = hc.Record("k", "n", "c5,c5", None, 1, "1", time.time())
        path.write_text(json.dumps({"k": dataclasses.asdict(rec)}))
    elif damage == "symlink":
        (state / "elsewhere").write_text("{}")
        path.symlink_to(state / "elsewhere")
    else:
        path.write_text("{}")
        if damage == "mode":
            path.chmod(0o666)
        else:
            os.chown(path, 65534, 65534)
    host = HostCategories(str(state), lambda: backend)
    with pytest.raises(CategoryStateError) as exc:
        host.reserve("k2", "n2")
    assert str(path) in str(exc.value)


def test_realm_vms_get_the_realm_category_and_a_new_realm_one_nobody_holds(backend, state):
    realms = {"acme": 1023}
    host = HostCategories(str(state), lambda: backend, realm_categories=lambda: realms)
    _u, pa = start(host, backend, "acme-1", realm="acme")
    _u, pn = start(host, backend, "plain")
    assert 1023 in pa.categories and 1023 not in pn.categories
    new = host.new_realm_category()
    assert new != 1023 and new not in pa.categories | pn.categories
    for name in ("acme-1", "plain"):
        backend.destroy(name)


def _alloc_in_threads(host, tag, threads, per_thread, out, errors):
    barrier = threading.Barrier(threads)

    def work(t):
        barrier.wait()
        for i in range(per_thread):
            key = f"{tag}-{t}-{i}"
            try:
                out.append((key, str(host.reserve(key, key))))
            except Exception as exc:
                errors.append(repr(exc))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


@pytest.mark.slow
def test_one_thousand_concurrent_allocations_from_threads_and_processes_are_unique(backend, state):
    """4 processes x 5 threads x 40 + this process's 10 threads x 20 = 1,000 allocations on
    one state directory at once; every pair differs, and the records hold all of them.  The
    space is c0..c63 (2,016 pairs), so without the host lock two of the 1,000 would collide
    almost surely (birthday bound), besides records being lost."""
    start_at = time.time() + 3
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "alloc_worker.py"),
                str(state),
                f"p{n}",
                "5",
                "40",
                str(start_at),
                str(CATS),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    try:
        host = HostCategories(str(state), lambda: backend, categories=CATS)
        out: list[tuple[str, str]] = []
        errors: list[str] = []
        time.sleep(max(0.0, start_at - time.time()))
        _alloc_in_threads(host, "t", 10, 20, out, errors)
        for p in procs:
            got = json.loads(p.stdout.readline())
            out += [tuple(x) for x in got["pairs"]]
            errors += got["errors"]
        assert errors == []
        assert len(out) == 1000
        pairs = [p for _k, p in out]
        assert len(set(pairs)) == 1000, "two allocations got the same pair"
        records = json.loads((state / hc.FILE).read_text())
        assert {k: r["pair"] for k, r in records.items()} == dict(out)
    finally:
        for p in procs:
            p.communicate(timeout=60)
    # the workers are gone: their in-flight records are dropped at the next rebuild
    host.sync()
    records = json.loads((state / hc.FILE).read_text())
    assert set(records) == {k for k, _p in out if k.startswith("t-")}


def test_a_refused_second_start_does_not_take_the_running_vms_pair_away(backend, state):
    host = HostCategories(str(state), lambda: backend, categories=8)
    uid, pair = start(host, backend, "twice")
    with pytest.raises(BackendError), host.instantiating(uid, "twice") as again:
        assert again == pair
        backend.create(domain_xml("twice", uid))  # already running: libvirt says no
    assert json.loads((state / hc.FILE).read_text())[uid]["pair"] == str(pair)
    (r,) = [r for r in host.running() if r.name == "twice"]
    assert (r.pair, r.source) == (pair, "record")
    backend.destroy("twice")


# -- the state kept in memory between allocations (svirtd under load) ---------------------------


def test_allocations_reuse_the_kept_state_instead_of_rebuilding_each_time(backend, state):
    host = HostCategories(str(state), lambda: backend)
    for i in range(5):
        start(host, backend, f"kept-{i}")
    assert host.rebuilds == 1, "each start listed every running domain again"
    for i in range(5):
        backend.destroy(f"kept-{i}")


def test_another_process_saving_makes_the_kept_state_rebuild(backend, state):
    """svirtd (a) and root's direct svirsh (b, a second object on the same directory) take
    turns: neither ever hands out a pair the other holds, down to the last free pair."""
    a = HostCategories(str(state), lambda: backend, categories=8)
    b = HostCategories(str(state), lambda: backend, categories=8)
    got = [str((a if i % 2 else b).reserve(f"k{i}", f"k{i}")) for i in range(28)]
    assert len(set(got)) == 28
    for host in (a, b):
        with pytest.raises(mcs.CategoriesExhausted):
            host.reserve("one-more", "one-more")


def test_a_record_file_changed_behind_the_kept_state_stops_allocation(backend, state):
    host = HostCategories(str(state), lambda: backend)
    host.reserve("k1", "n1")
    (state / hc.FILE).chmod(0o666)  # the generation in the lock file did not change
    with pytest.raises(CategoryStateError):
        host.reserve("k2", "n2")


def test_pairs_of_vms_that_stopped_come_back_when_the_kept_state_is_full(backend, state):
    host = HostCategories(str(state), lambda: backend, categories=8, refresh=3600)
    for i in range(28):
        start(host, backend, f"full-{i}")
    backend.destroy("full-3")  # behind our back: the kept state still counts its pair
    start(host, backend, "after")
    for i in range(28):
        if i != 3:
            backend.destroy(f"full-{i}")
    backend.destroy("after")


def test_a_restart_from_the_kept_state_is_in_flight_for_other_processes(backend, state):
    """The VM ran (its record confirmed) and stopped; starting it again from a kept state must
    mark the record in flight, or a rebuild elsewhere would drop it and free the pair while the
    start is under way.  A failed start puts the confirmed record back."""
    host = HostCategories(str(state), lambda: backend, refresh=3600)
    uid, pair = start(host, backend, "again", persistent=True)
    backend.destroy("again")
    with host.instantiating(uid, "again") as same:
        assert same == pair
        HostCategories(str(state), lambda: backend).sync()  # root's svirsh, meanwhile
        assert json.loads((state / hc.FILE).read_text())[uid]["confirmed"] is False
        backend.start("again")
    # the confirmation waits for this object's next change or rebuild ("Confirmed later")
    assert json.loads((state / hc.FILE).read_text())[uid]["confirmed"] is False
    host.sync()
    assert json.loads((state / hc.FILE).read_text())[uid]["confirmed"] is True
    with pytest.raises(BackendError), host.instantiating(uid, "again"):
        backend.start("again")  # already running: libvirt says no
    rec = json.loads((state / hc.FILE).read_text())[uid]
    assert (rec["pair"], rec["confirmed"]) == (str(pair), True)
    backend.destroy("again")
    backend.undefine("again")


def test_concurrent_reservations_share_lock_and_saves_never_pairs(backend, state, monkeypatch):
    """32 threads reserving at once: every pair differs and is in the record file when its
    reserve returns, while the changes queued behind the lock holder share its saves."""
    host = HostCategories(str(state), lambda: backend, categories=CATS)
    saves = []
    real = hc._replace_file
    monkeypatch.setattr(hc, "_replace_file", lambda *a: (saves.append(1), real(*a)))
    threads, per_thread = 32, 10
    barrier = threading.Barrier(threads)
    got, missing, lock = [], [], threading.Lock()

    def work(t):
        barrier.wait()
        for i in range(per_thread):
            key = f"c-{t}-{i}"
            pair = str(host.reserve(key, key))
            on_disk = json.loads((state / hc.FILE).read_text()).get(key, {}).get("pair")
            with lock:
                got.append(pair)
                if on_disk != pair:
                    missing.append(key)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n = threads * per_thread
    assert missing == [] and len(set(got)) == n
    assert len(saves) < n * 0.8, f"{len(saves)} saves for {n} reservations"


def _queued(host: HostCategories, n: int) -> None:
    """Until ``n`` changes wait behind the batch being applied (the hang guard only)."""
    deadline = time.monotonic() + 60
    while len(host._changes._queue) < n:
        assert time.monotonic() < deadline, "the changes were never queued"
        time.sleep(0.001)


def _reserve_in_thread(host: HostCategories, key: str, out: dict) -> threading.Thread:
    def run():
        try:
            out[key] = host.reserve(key, key)
        except Exception as exc:
            out[key] = exc

    t = threading.Thread(target=run)
    t.start()
    return t


def test_changes_queued_behind_the_lock_are_one_batch_one_state_check_one_save(
    backend, state, monkeypatch
):
    """While one reserve holds the lock (its save held here), three more queue; the first of
    them then applies all three under one lock with one state check and one save, and each
    returns its own pair, already in the record file."""
    host = HostCategories(str(state), lambda: backend, categories=CATS, refresh=3600)
    host.reserve("warm", "warm")  # the state is built: the batches below reuse it
    saves, checks = [], []
    held, release = threading.Event(), threading.Event()
    real_replace, real_state = hc._replace_file, HostCategories._state

    def replace_file(path, data):
        saves.append(sorted(json.loads(data)))
        if len(saves) == 1:
            held.set()
            assert release.wait(60)
        real_replace(path, data)

    def state_check(self):
        checks.append(1)
        return real_state(self)

    monkeypatch.setattr(hc, "_replace_file", replace_file)
    monkeypatch.setattr(HostCategories, "_state", state_check)
    out: dict = {}
    first = _reserve_in_thread(host, "a", out)
    assert held.wait(60)
    later = []
    for n, key in enumerate(("b", "c", "d"), 1):
        later.append(_reserve_in_thread(host, key, out))
        _queued(host, n)
    release.set()
    for t in (first, *later):
        t.join(60)
    assert len(checks) == 2 and len(saves) == 2  # a's batch, then b, c and d's
    assert saves[1] == ["a", "b", "c", "d", "warm"]
    on_disk = json.loads((state / hc.FILE).read_text())
    assert {k: on_disk[k]["pair"] for k in "abcd"} == {k: str(out[k]) for k in "abcd"}
    assert len({str(out[k]) for k in "abcd"}) == 4


def test_a_batch_that_cannot_reach_the_state_fails_each_of_its_changes_and_the_next_runs(
    backend, state, monkeypatch
):
    """Fail closed, per batch: the state check of b, c and d's batch fails, so each of them
    gets the CategoryStateError (no pair handed out blind, nobody left waiting); the change
    queued after them is applied as usual."""
    host = HostCategories(str(state), lambda: backend, categories=CATS)
    held, release = threading.Event(), threading.Event()
    calls = []
    real_state = HostCategories._state

    def state_check(self):
        calls.append(1)
        if len(calls) == 1:
            held.set()
            assert release.wait(60)
        elif len(calls) == 2:
            raise CategoryStateError("the record file is damaged (test)")
        return real_state(self)

    monkeypatch.setattr(HostCategories, "_state", state_check)
    out: dict = {}
    first = _reserve_in_thread(host, "a", out)
    assert held.wait(60)
    failing = []
    for n, key in enumerate(("b", "c", "d"), 1):
        failing.append(_reserve_in_thread(host, key, out))
        _queued(host, n)
    release.set()
    for t in (first, *failing):
        t.join(60)
    assert isinstance(out["a"], mcs.CategoryPair)
    assert all(isinstance(out[k], CategoryStateError) for k in "bcd"), out
    assert "damaged (test)" in str(out["b"])
    assert isinstance(host.reserve("e", "e"), mcs.CategoryPair)
    assert set(json.loads((state / hc.FILE).read_text())) == {"a", "e"}


@pytest.mark.parametrize("exchange", [True, False], ids=["exchanged", "renamed"])
def test_the_record_file_is_replaced_whole_and_leaves_nothing_behind(
    backend, state, monkeypatch, exchange
):
    """Saved by swapping names with the old file (no rename over it: ext4 then forces the
    data out, milliseconds under the lock) or, where that is impossible, by a rename."""
    if not exchange:
        monkeypatch.setattr(hc, "_exchange_fn", [None])
    host = HostCategories(str(state), lambda: backend)
    ino = []
    for i in range(20):
        host.reserve(f"k{i}", f"n{i}")
        ino.append((state / hc.FILE).stat().st_ino)
    assert set(json.loads((state / hc.FILE).read_text())) == {f"k{i}" for i in range(20)}
    assert len(set(ino)) > 1  # a new file each time, never rewritten in place
    assert sorted(p.name for p in state.iterdir()) == sorted([hc.LOCK, hc.FILE])
    assert oct((state / hc.FILE).stat().st_mode & 0o777) == "0o600"
    if exchange:  # glibc >= 2.28 on Linux >= 3.15 has it: the fast path is the one taken
        assert hc._exchange_fn[0] is not None


def test_an_empty_record_file_reads_as_no_records(backend, state):
    """What an unsynced replace can leave after the host crashed (and nothing runs then)."""
    (state / hc.FILE).write_bytes(b"")
    (state / hc.FILE).chmod(0o600)
    host = HostCategories(str(state), lambda: backend)
    host.reserve("k", "n")
    assert set(json.loads((state / hc.FILE).read_text())) == {"k"}


# -- "Confirmed later" and the kept record texts ---------------------------------------------
def test_a_start_saves_the_records_once_and_the_next_change_carries_its_confirmation(
    backend, state, monkeypatch
):
    """A start waits for one save (its record in flight, before the hypervisor call); the
    confirmation rides with the next change, in order, and lands in the file with it."""
    host = HostCategories(str(state), lambda: backend, refresh=3600)
    saves = []
    real = hc._replace_file
    monkeypatch.setattr(hc, "_replace_file", lambda *a: (saves.append(1), real(*a)))
    uid, pair = start(host, backend, "first")
    assert len(saves) == 1, "the start waited for a second save (its confirmation)"
    assert json.loads((state / hc.FILE).read_text())[uid]["confirmed"] is False
    other = host.reserve("other-key", "other")
    records = json.loads((state / hc.FILE).read_text())
    assert records[uid]["confirmed"] is True and records["other-key"]["pair"] == str(other)
    assert len(saves) == 2
    assert vmmeta.parse(backend.get_metadata("first", vmmeta.NS)).categories == str(pair)
    backend.destroy("first")


def test_a_queued_confirmation_errs_only_on_the_safe_side(backend, state):
    """Before its confirmation is saved, another process's rebuild keeps the pair taken while
    the VM runs, and still once it stopped (its record's owner lives); once saved, the pair of
    the stopped VM is free again.  The pair is never handed out twice meanwhile."""
    host = HostCategories(str(state), lambda: backend, refresh=3600, categories=CATS)
    uid, pair = start(host, backend, "queued")
    other = HostCategories(str(state), lambda: backend, categories=CATS)  # root's svirsh
    assert [r.pair for r in other.running() if r.name == "queued"] == [pair]
    assert pair not in {other.reserve(f"x-{i}", f"x-{i}") for i in range(50)}
    backend.destroy("queued")
    other.sync()
    assert json.loads((state / hc.FILE).read_text())[uid]["pair"] == str(pair)  # kept: in flight
    host.sync()  # saves the confirmation: now a record of a VM that stopped
    other.sync()
    assert uid not in json.loads((state / hc.FILE).read_text())


def test_the_record_file_is_the_same_json_with_texts_kept_between_saves(backend, state):
    """The texts kept from one save to the next make exactly the file a fresh encoding makes,
    also for a record replaced by a change (confirmed), one dropped, and names JSON escapes."""
    host = HostCategories(str(state), lambda: backend, refresh=3600, categories=CATS)
    names = ["plain", 'quote"and\\slash', "ünïcode", "tab\there"]
    keys = [
        host.reserve(f"k-{i}", n, "realm" if i % 2 else None) and f"k-{i}"
        for i, n in enumerate(names)
    ]
    uid, _pair = start(host, backend, "confirmed-one")
    host.release(keys[1])
    host.sync()  # applies the queued confirmation: a replaced record object
    raw = (state / hc.FILE).read_text()
    data = json.loads(raw)
    assert data[uid]["confirmed"] is True and keys[1] not in data
    assert {data[k]["name"] for k in (keys[0], keys[2], keys[3])} == {names[0], *names[2:]}
    assert raw == json.dumps(dict(sorted(data.items())), separators=(",", ":"))
    backend.destroy("confirmed-one")
