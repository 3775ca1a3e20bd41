"""fsutil.py: trusted reads, atomic writes and secure directories, on real files."""

from __future__ import annotations

import os
import stat

import pytest

from secured_virt.fsutil import (
    UnsafeFileError,
    atomic_write,
    ensure_secure_dir,
    open_secure_dir,
    read_trusted_file,
)


def test_read_trusted_file_returns_content(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"hello")
    p.chmod(0o644)
    assert read_trusted_file(str(p), max_size=100) == b"hello"


def test_read_trusted_file_size_limit(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 101)
    with pytest.raises(UnsafeFileError, match="more than the limit of 100"):
        read_trusted_file(str(p), max_size=100)


def test_read_trusted_file_checks_the_owner_it_is_told(tmp_path, test_users):
    alice = test_users["svt-alice"]
    p = tmp_path / "f"
    p.write_bytes(b"x")
    os.chown(p, alice.pw_uid, -1)
    with pytest.raises(UnsafeFileError, match="should be 0"):
        read_trusted_file(str(p), max_size=10)
    assert read_trusted_file(str(p), max_size=10, owner_uid=alice.pw_uid) == b"x"


def test_read_trusted_file_missing_raises_filenotfound(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_trusted_file(str(tmp_path / "nope"), max_size=10)


def test_atomic_write_sets_mode_owner_and_content(tmp_path, test_users):
    bob = test_users["svt-bob"]
    target = tmp_path / "state"
    atomic_write(str(target), "v1", mode=0o640, uid=bob.pw_uid, gid=bob.pw_gid)
    st = target.stat()
    assert target.read_text() == "v1"
    assert stat.S_IMODE(st.st_mode) == 0o640 and (st.st_uid, st.st_gid) == (bob.pw_uid, bob.pw_gid)
    atomic_write(str(target), b"v2")
    assert target.read_bytes() == b"v2" and target.stat().st_uid == 0
    assert sorted(os.listdir(tmp_path)) == ["state"]  # no temp files left behind


def test_atomic_write_replaces_a_symlink_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "state"
    link.symlink_to(victim)
    atomic_write(str(link), "new")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "new"


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tiny_fs):
    target = tiny_fs / "state"
    atomic_write(str(target), "old content")
    with pytest.raises(OSError, match="No space left"):
        atomic_write(str(target), b"x" * 64 * 1024)
    assert target.read_text() == "old content"
    assert os.listdir(tiny_fs) == ["state"]


def test_secure_dir_is_created_with_the_mode(tmp_path):
    d = tmp_path / "a" / "ts"
    ensure_secure_dir(str(d), 0o700)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and d.stat().st_uid == 0
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755


def test_secure_dir_mode_may_be_stricter_not_looser(tmp_path):
    d = tmp_path / "log"
    d.mkdir(mode=0o700)
    d.chmod(0o700)
    ensure_secure_dir(str(d), 0o750)  # 0700 is within 0750
    d.chmod(0o755)
    with pytest.raises(UnsafeFileError, match="mode 0755, which grants more than 0750"):
        ensure_secure_dir(str(d), 0o750)


def test_secure_dir_wrong_owner_refused(tmp_path, test_users):
    d = tmp_path / "ts"
    d.mkdir(mode=0o700)
    os.chown(d, test_users["svt-alice"].pw_uid, -1)
    with pytest.raises(UnsafeFileError, match=r"owned by uid \d+, should be 0"):
        ensure_secure_dir(str(d), 0o700)


def test_secure_dir_symlink_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    real.chmod(0o700)
    link = tmp_path / "ts"
    link.symlink_to(real)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        open_secure_dir(str(link), 0o700)


def test_secure_dir_under_a_writable_ancestor_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # writable by all, not sticky: anyone could swap "ts"
    (open_dir / "ts").mkdir(mode=0o700)
    with pytest.raises(UnsafeFileError, match="writable by group or others"):
        ensure_secure_dir(str(open_dir / "ts"), 0o700)
    open_dir.chmod(0o1777)  # sticky, like /tmp: others cannot rename root's entries
    ensure_secure_dir(str(open_dir / "ts"), 0o700)


def test_secure_dir_under_a_user_owned_ancestor_refused(tmp_path, test_users):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chown(home, test_users["svt-bob"].pw_uid, -1)
    with pytest.raises(UnsafeFileError, match="every directory above it must be owned by root"):
        ensure_secure_dir(str(home / "ts"), 0o700)


def test_host_lock_excludes_another_open_file_description_and_refuses_a_symlink(tmp_path):
    """HostLock opens its file afresh each time (nothing shared across a fork) and never
    follows a planted symlink to lock, create or truncate something else."""
    import fcntl

    from secured_virt.fsutil import HostLock

    lock = HostLock(str(tmp_path / "state" / "x.lock"))
    with lock:
        fd = os.open(lock.path, os.O_RDWR)  # what another process would open
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert oct(os.stat(tmp_path / "state").st_mode & 0o777) == "0o700"
    assert oct(os.stat(lock.path).st_mode & 0o777) == "0o600"
    with lock:  # released, and usable again
        pass
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.unlink(lock.path)
    os.symlink(target, lock.path)
    with pytest.raises(OSError, match="cannot open the lock file"), lock:
        pass
    assert target.read_text() == "keep"
    with lock._thread:  # the thread lock was given back after the refusal
        pass
