"""Helpers for the realm and group tests: real local users and groups, removed afterwards.

Why real accounts: group roles are resolved through NSS (``os.getgrouplist``); only accounts
in /etc/passwd and /etc/group show that primary groups, supplementary groups and a
``gpasswd`` change are seen the way a directory's would be.  Names carry the test's process id
so parallel or crashed runs never collide, and everything is deleted even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import types
from contextlib import contextmanager

import pytest

#: the marks of a test file whose svirtd serves real local accounts: integration, and root only
#: (the accounts are created with useradd, the policy files must be root-owned)
REAL_UIDS = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="real uids and root-owned files: run as root"),
]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


class LocalAccounts:
    """Creates users and groups with the shadow tools; ``cleanup()`` removes them all."""

    def __init__(self, tag: str | None = None):
        self.tag = tag or f"t{os.getpid() % 100000}"
        self.users: list[str] = []
        self.groups: list[str] = []

    def name(self, base: str) -> str:
        return f"sv{self.tag}{base}"[:31]

    def group(self, base: str) -> str:
        name = self.name(base)
        _run("/usr/sbin/groupadd", name)
        self.groups.append(name)
        return name

    def user(self, base: str, *, primary: str | None = None, groups=()) -> str:
        name = self.name(base)
        argv = ["/usr/sbin/useradd", "-M", "-N", "-s", "/usr/sbin/nologin"]
        if primary:
            argv += ["-g", primary]
        else:
            argv += ["-g", "nogroup"]
        if groups:
            argv += ["-G", ",".join(groups)]
        _run(*argv, name)
        self.users.append(name)
        return name

    def add(self, user: str, group: str) -> None:
        _run("/usr/bin/gpasswd", "-a", user, group)

    def remove(self, user: str, group: str) -> None:
        _run("/usr/bin/gpasswd", "-d", user, group)

    def uid(self, user: str) -> int:
        import pwd

        return pwd.getpwnam(user).pw_uid

    def cleanup(self) -> None:
        for u in reversed(self.users):
            subprocess.run(["/usr/sbin/userdel", u], capture_output=True, timeout=60)
        for g in reversed(self.groups):
            subprocess.run(["/usr/sbin/groupdel", g], capture_output=True, timeout=60)
        self.users.clear()
        self.groups.clear()


@contextmanager
def local_accounts(tag: str | None = None):
    acc = LocalAccounts(tag)
    try:
        yield acc
    finally:
        acc.cleanup()


@contextmanager
def three_members(tag: str):
    """The differential tests' accounts: b in g1, c in g1 and g2 (primary g3), d in none;
    ``groups`` ends with a group name no NSS source knows."""
    with local_accounts(tag) as acc:
        g1, g2, g3 = acc.group("g1"), acc.group("g2"), acc.group("g3")
        users = [
            acc.user("b", groups=[g1]),
            acc.user("c", primary=g3, groups=[g1, g2]),
            acc.user("d"),
        ]
        yield types.SimpleNamespace(acc=acc, groups=[g1, g2, g3, acc.name("missing")], users=users)


def root_call(env, command: str, args: dict) -> dict:
    """A request from this (root) process: svirtd sees uid 0 through SO_PEERCRED."""
    from secured_virt import client
    from secured_virt.requests import Request

    return client.call(env.socket, Request(command, args), password_cb=None, timeout=60).to_dict()


def tear_down_realm_host(be, env, tag: str, realms, scratch, images, made_images: bool) -> None:
    """Undo a real-QEMU realm test host: the guests named ``tag*`` (destroyed, undefined),
    svirtd and its files, the realms' system users, the scratch images, and ``images`` itself
    when the test made it."""
    from secured_virt.backends.base import BackendError
    from secured_virt.confinement import dac

    for d in be.list_domains(include_inactive=True):
        if d.name.startswith(tag):
            with contextlib.suppress(BackendError):
                be.destroy(d.name)
            with contextlib.suppress(BackendError):
                be.undefine(d.name)
    be.close()
    if env is not None:
        if getattr(env, "d", None) is not None:
            env.d.stop()
        env.cleanup()
        with contextlib.suppress(OSError):
            os.unlink(f"{env.node}.realms.xml")
    for realm in realms:
        dac.remove_realm_user(dac.realm_user_name(realm))
    shutil.rmtree(scratch, ignore_errors=True)
    if made_images:
        with contextlib.suppress(OSError):
            images.rmdir()


@contextmanager
def realm_svirtd_host():
    """A private svirtd host (tests/daemon/svtd_helpers.RealEnv) that reads a realms file next
    to its node (``{node}.realms.xml``, state in ``{node}.state``); its svirtd, once a test
    starts one as ``env.d``, is stopped and the host removed even when the test fails."""
    from svtd_helpers import RealEnv

    env = RealEnv(realms="{node}.realms.xml", realm_state_dir="{node}.state")
    try:
        yield env
    finally:
        if getattr(env, "d", None) is not None:
            env.d.stop()
        env.cleanup()


def write_realm_policy(env, users, role: str, pa: str, realms: str) -> None:
    """Root's files for a realm host: a UA giving each of ``users`` (names) the one ``role``,
    the PA, and the realms file; the roles reach everything, so only realms keep users apart."""
    from pathlib import Path

    from svtd_helpers import write_root_file

    ua = "".join(f'<User name="{name}"><UserRole role="{role}"/></User>' for name in users)
    write_root_file(env.ua, f"<UserConfiguration>{ua}</UserConfiguration>")
    write_root_file(env.pa, pa)
    write_root_file(Path(f"{env.node}.realms.xml"), realms)
