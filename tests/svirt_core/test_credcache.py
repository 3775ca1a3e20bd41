"""credcache.py: sudo-like time stamps — per uid and session, timeout, forget, unsafe paths."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import time

import pytest

from secured_virt.access.credcache import CredCache, CredCacheError, session_key
from secured_virt.access.identity import Identity, identify_process, read_proc_stat

ALICE_UID = 4001  # cache files are named by uid; the uid needs no passwd entry here


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "ts"


@pytest.fixture
def cache(cache_dir):
    return CredCache(str(cache_dir), 5)


@pytest.fixture
def sleeper():
    """Live processes to stand in for session leaders / parents; killed at teardown."""
    procs = []

    def start(new_session: bool = False) -> subprocess.Popen:
        p = subprocess.Popen(["/bin/sleep", "300"], start_new_session=new_session)
        procs.append(p)
        for _ in range(200):  # wait until it runs sleep (start time is fixed from exec on)
            ps = read_proc_stat(p.pid)
            if ps and ps.comm == "sleep":
                break
            time.sleep(0.005)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def ident(uid=ALICE_UID, **kw) -> Identity:
    base = Identity(uid=uid, gid=uid, user="svt-alice", groups=(uid,), via="svirtd", pid=1)
    return dataclasses.replace(base, **kw)


def tty_ident(leader: subprocess.Popen, tty_dev: int = 34817, **kw) -> Identity:
    return ident(tty="/dev/pts/1", tty_dev=tty_dev, sid=leader.pid, **kw)


def rewrite(cache_dir, uid, fn):
    path = cache_dir / str(uid)
    doc = json.loads(path.read_text())
    fn(doc["records"])
    path.write_text(json.dumps(doc))


def test_nothing_cached_at_first_then_cached_after_update(cache, cache_dir, sleeper):
    me = tty_ident(sleeper(new_session=True))
    assert not cache.check(me)
    assert cache.update(me)
    assert cache.check(me)
    st = (cache_dir / str(ALICE_UID)).stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700  # created 0700


def test_another_terminal_of_the_same_user_is_not_covered(cache, sleeper):
    leader = sleeper(new_session=True)
    cache.update(tty_ident(leader, tty_dev=34817))
    assert not cache.check(tty_ident(leader, tty_dev=34818))


def test_another_session_on_the_same_terminal_is_not_covered(cache, sleeper):
    """A new login on a recycled pty has a new session leader."""
    first, second = sleeper(new_session=True), sleeper(new_session=True)
    cache.update(tty_ident(first))
    assert not cache.check(tty_ident(second))


def test_logout_ends_reuse(cache, sleeper):
    leader = sleeper(new_session=True)
    me = tty_ident(leader)
    cache.update(me)
    leader.kill()
    leader.wait()
    assert not cache.check(me)


def test_session_leader_start_time_is_checked(cache, cache_dir, sleeper):
    """Same sid but a different leader start time (pid reused after logout/login): refused."""
    me = tty_ident(sleeper(new_session=True))
    cache.update(me)

    def shift(records):
        records[0]["session"]["start"] -= 1

    rewrite(cache_dir, ALICE_UID, shift)
    assert not cache.check(me)


def test_without_tty_the_parent_process_is_the_key(cache, sleeper):
    parent, other = sleeper(), sleeper()
    me = ident(ppid=parent.pid)
    assert session_key(me).kind == "ppid"
    cache.update(me)
    assert cache.check(me)
    assert not cache.check(ident(ppid=other.pid))


def test_own_process_identity_can_be_cached(cache):
    me = identify_process()
    assert cache.update(me) and cache.check(me)


def test_no_session_information_means_no_caching(cache):
    lonely = ident()  # no tty, no sid, no ppid
    assert session_key(lonely) is None
    assert not cache.update(lonely) and not cache.check(lonely)


def test_records_are_per_uid(cache, sleeper):
    leader = sleeper(new_session=True)
    cache.update(tty_ident(leader, uid=ALICE_UID))
    assert not cache.check(tty_ident(leader, uid=ALICE_UID + 1))


@pytest.mark.parametrize(
    ("age", "valid"),
    [(0, True), (299, True), (301, False), (-1, False), (-601, False)],
)
def test_timeout_and_records_from_the_future(cache, cache_dir, sleeper, age, valid):
    me = tty_ident(sleeper(new_session=True))
    cache.update(me)
    now = time.clock_gettime(time.CLOCK_BOOTTIME)

    def set_age(records):
        records[0]["ts"] = now - age

    rewrite(cache_dir, ALICE_UID, set_age)
    assert cache.check(me) is valid


def test_record_from_another_boot_is_ignored(cache, cache_dir, sleeper):
    me = tty_ident(sleeper(new_session=True))
    cache.update(me)

    def other_boot(records):
        records[0]["boot_id"] = "00000000-0000-0000-0000-000000000000"

    rewrite(cache_dir, ALICE_UID, other_boot)
    assert not cache.check(me)


def test_timeout_zero_never_caches(cache_dir, sleeper):
    zero = CredCache(str(cache_dir), 0)
    me = tty_ident(sleeper(new_session=True))
    assert not zero.update(me) and not zero.check(me)


def test_real_expiry(cache_dir, sleeper):
    short = CredCache(str(cache_dir), 0.5 / 60)  # half a second
    me = tty_ident(sleeper(new_session=True))
    short.update(me)
    assert short.check(me)
    time.sleep(0.6)
    assert not short.check(me)


def test_forget(cache, cache_dir, sleeper):
    leader = sleeper(new_session=True)
    mine, theirs = tty_ident(leader), tty_ident(leader, uid=ALICE_UID + 1)
    cache.update(mine)
    cache.update(theirs)
    cache.forget(ALICE_UID)
    assert not cache.check(mine) and not (cache_dir / str(ALICE_UID)).exists()
    assert cache.check(theirs)
    cache.forget(ALICE_UID)  # forgetting twice is fine


def test_symlinked_directory_is_refused(tmp_path, sleeper):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    real.chmod(0o700)
    link = tmp_path / "ts"
    link.symlink_to(real)
    cache = CredCache(str(link), 5)
    me = tty_ident(sleeper(new_session=True))
    with pytest.raises(CredCacheError, match="symbolic link"):
        cache.update(me)
    assert not cache.check(me)
    assert os.listdir(real) == []


def test_symlinked_file_is_not_followed(cache, cache_dir, tmp_path, sleeper):
    me = tty_ident(sleeper(new_session=True))
    cache_dir.mkdir(mode=0o700)
    cache_dir.chmod(0o700)
    victim = tmp_path / "victim"
    victim.write_text("do not touch")
    victim.chmod(0o600)
    (cache_dir / str(ALICE_UID)).symlink_to(victim)
    assert not cache.check(me)  # O_NOFOLLOW: ignored
    assert cache.update(me)  # replaces the link with a regular file
    assert victim.read_text() == "do not touch"
    assert not (cache_dir / str(ALICE_UID)).is_symlink() and cache.check(me)


@pytest.mark.parametrize("mode", [0o750, 0o701, 0o777])
def test_directory_accessible_to_others_is_refused(cache, cache_dir, sleeper, mode):
    cache_dir.mkdir()
    cache_dir.chmod(mode)
    me = tty_ident(sleeper(new_session=True))
    with pytest.raises(CredCacheError, match="grants more than 0700"):
        cache.update(me)
    assert not cache.check(me)


def test_directory_owned_by_someone_else_is_refused(cache, cache_dir, sleeper, test_users):
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, test_users["svt-alice"].pw_uid, -1)
    me = tty_ident(sleeper(new_session=True))
    with pytest.raises(CredCacheError, match="owned by uid"):
        cache.update(me)
    assert not cache.check(me)


def test_planted_record_file_with_wrong_owner_or_mode_is_ignored(
    cache, cache_dir, sleeper, test_users
):
    me = tty_ident(sleeper(new_session=True))
    cache.update(me)
    path = cache_dir / str(ALICE_UID)
    path.chmod(0o644)
    assert not cache.check(me)
    path.chmod(0o600)
    os.chown(path, test_users["svt-alice"].pw_uid, -1)
    assert not cache.check(me)


def test_hard_linked_record_file_is_ignored(cache, cache_dir, sleeper):
    me = tty_ident(sleeper(new_session=True))
    cache.update(me)
    os.link(cache_dir / str(ALICE_UID), cache_dir / "extra-link")
    assert not cache.check(me)


def test_record_file_for_another_uid_copied_over_is_ignored(cache, cache_dir, sleeper):
    leader = sleeper(new_session=True)
    cache.update(tty_ident(leader, uid=ALICE_UID + 1))
    os.replace(cache_dir / str(ALICE_UID + 1), cache_dir / str(ALICE_UID))
    assert not cache.check(tty_ident(leader, uid=ALICE_UID))
