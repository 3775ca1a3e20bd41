"""Autostart through the gate: a VM marked with ``svirsh autostart`` is started by svirtd when
the host boots, as the user who marked it, and mediated like that user's own ``start``.

Why not libvirt's autostart flag: libvirtd starts a domain carrying it at host boot, before and
outside secured-virt: no RBAC, no sHype/ACM Chinese Wall against what already runs, no realm
quota, no sVirt category pair.  A tenant allowed to mark their VM could have it running beside
a competitor's after the next reboot, which no ``start`` of theirs would have been allowed to
do.  So the ``autostart`` operation records a *wish* instead, and never sets libvirt's flag:

* **Where.**  In root's own state, ``<acm_state_dir>/autostart.json`` (0600, replaced
  atomically and durably under a host-wide lock), keyed by the VM's UUID: not in the VM's XML,
  which a user who may define it writes (a defined XML can carry no autostart of its own), and
  not by name, so a VM defined later under the same name is not started for the one marked.
  Each wish names the user it was made for (root's ``--as`` user, else the caller).
* **When.**  The first time svirtd starts after the host booted: it then finds no marker
  ``autostarted`` beside its socket (``/run`` is emptied at every boot), writes it, and starts
  every VM wished for that is defined and not running, in name order, each as its user
  (:func:`start_wished`).  Restarting svirtd while the host runs starts nothing: a VM its
  owner stopped stays stopped, as with libvirt's flag.
* **How.**  Each start is an ordinary request of that user's through the service (the
  request's ``via`` is ``autostart``): their rights as they are at boot (a user who lost
  ``start`` on the VM gets a refusal, not a running VM), the Chinese Wall against what already
  runs (the first of two conflicting VMs to start wins; the other's refusal is audited), the
  realm's quota, a fresh category pair, the decision and outcome audited.  Acting on the VM of
  the wish's UUID only (``backend.pinned``).  An operation that needs a password
  (``auth_operations``) cannot be answered unattended, so such a start is refused and audited.
* **Display.**  ``dominfo`` and ``list`` (``--autostart``, ``--no-autostart``) show a VM as
  autostarting when libvirt's flag is set or a wish is recorded for it.

``autostart --disable`` removes the wish and also clears libvirt's own flag (root may have set
it with virsh): both only narrow what the VM reaches.  libvirt's flag set by root outside
secured-virt stays outside the gate; svirtd's start-up sync reports a conflict it caused.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pwd
import time

from secured_virt.fsutil import (
    HostLock,
    UnsafeFileError,
    atomic_write,
    ensure_secure_dir,
    read_trusted_file,
)
from secured_virt.lazylog import lazy_logger

log = lazy_logger("svirtd")  # logging loads at the first message (direct mode, issue 18)

FILE = "autostart.json"
LOCK = "autostart.lock"
MARKER = "autostarted"
VIA_AUTOSTART = "autostart"
_MAX_FILE = 8 << 20  # ~40k wishes: far more VMs than a host runs


class AutostartError(Exception):
    """The wishes cannot be read or written safely; the request (or the boot pass) is refused."""


class AutostartWishes:
    """The recorded wishes: UUID -> {"name", "user", "since"}."""

    def __init__(self, state_dir: str):
        self.dir = state_dir
        self.path = os.path.join(state_dir, FILE)
        self._lock = HostLock(os.path.join(state_dir, LOCK))
        self._seen: tuple | None = None  # (stat key, frozenset of UUIDs) of the last read

    # -- reading ----------------------------------------------------------------------------
    def load(self) -> dict[str, dict]:
        """Every wish; {} when none was ever recorded.  AutostartError for a file that is not
        root's regular file, writable by root alone, or that does not parse."""
        try:
            # root's regular file, writable by root alone, opened without following a link
            raw = read_trusted_file(self.path, max_size=_MAX_FILE, owner_uid=os.geteuid())
        except FileNotFoundError:
            return {}
        except UnsafeFileError as exc:
            raise AutostartError(
                f"{exc}; refusing to trust the autostart wishes it records (it must be a "
                f"regular file of uid {os.geteuid()}, writable by nobody else)"
            ) from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("expected an object of UUID -> wish")
            for uuid, wish in data.items():
                if not (
                    isinstance(uuid, str)
                    and isinstance(wish, dict)
                    and isinstance(wish.get("name"), str)
                    and isinstance(wish.get("user"), str)
                ):
                    raise ValueError(f"the wish for {uuid!r} needs a name and a user")
        except ValueError as exc:
            raise AutostartError(
                f"{self.path} is damaged ({exc}); fix or remove it (removing it forgets every "
                "autostart made with svirsh)"
            ) from None
        return data

    def wished(self) -> frozenset[str]:
        """The UUIDs with a wish, read again only when the file changed (one stat a call: the
        list of every request asks).  A file that cannot be trusted counts as no wishes: the
        display errs towards "disable", and the boot pass refuses it loudly (load)."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen = None
            return frozenset()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        seen = self._seen
        if seen is not None and seen[0] == key:
            return seen[1]
        try:
            uuids = frozenset(self.load())
        except AutostartError:
            uuids = frozenset()
        self._seen = (key, uuids)
        return uuids

    # -- writing ----------------------------------------------------------------------------
    def record(self, uuid: str, name: str, user: str) -> None:
        """Wish ``uuid`` (now called ``name``) started at boot as ``user``."""
        since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._change(lambda w: w.__setitem__(uuid, {"name": name, "user": user, "since": since}))

    def forget(self, uuid: str) -> bool:
        """Remove the wish for ``uuid``; whether there was one."""
        found = []

        def drop(wishes):
            if wishes.pop(uuid, None) is not None:
                found.append(True)

        self._change(drop)
        return bool(found)

    def _change(self, fn) -> None:
        try:
            # the ACM state directory (0755, as the enforcer makes it): root's, nobody else's
            ensure_secure_dir(self.dir, 0o755)
            with self._lock:
                wishes = self.load()
                before = dict(wishes)
                fn(wishes)
                if wishes != before:
                    text = json.dumps(wishes, sort_keys=True, separators=(",", ":"))
                    atomic_write(self.path, text, mode=0o600, uid=os.geteuid(), gid=None)
        except (OSError, UnsafeFileError) as exc:
            raise AutostartError(f"cannot record the autostart in {self.path}: {exc}") from None


# -- the boot pass ----------------------------------------------------------------------------
def marker_path(socket_path: str) -> str:
    """Where svirtd notes that this boot's autostart pass ran: beside its socket, in /run."""
    return os.path.join(os.path.dirname(os.path.abspath(socket_path)), MARKER)


def first_after_boot(marker: str) -> bool:
    """Create ``marker``; True when it was not there (svirtd's first start since the host
    booted).  A marker that cannot be written counts as there: rather no autostart than one
    at every restart of svirtd."""
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileExistsError:
        return False
    except OSError as exc:
        log.warning("autostart: cannot write %s (%s); no VM is autostarted", marker, exc.strerror)
        return False
    os.close(fd)
    return True


def _identity_of(user: str):
    """The identity of ``user`` as svirtd would see them connect: passwd and groups now."""
    from secured_virt.access.identity import Identity

    pw = pwd.getpwnam(user)  # KeyError: no such user any more
    groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    return Identity(
        uid=pw.pw_uid,
        gid=pw.pw_gid,
        user=pw.pw_name,
        groups=groups,
        via=VIA_AUTOSTART,
        pid=os.getpid(),
    )


def start_wished(service, *, tries: int = 60, pause: float = 5.0) -> list[tuple[str, str, object]]:
    """Start every VM wished for that is defined and not running, in name order, each as the
    user of its wish, through ``service.handle``.  Returns (VM, user, Reply or reason) for each
    wish looked at.  Waits (``tries`` x ``pause``) for the hypervisor when it does not answer
    yet (svirtd may come up before libvirtd at boot)."""
    from secured_virt.requests import Request

    from .errors import NullInteraction

    try:
        wishes = service.autostart.load()
    except AutostartError as exc:
        log.error("autostart: %s; no VM is autostarted", exc)
        return []
    if not wishes:
        return []
    domains = None
    for attempt in range(max(1, tries)):
        try:
            domains = {d.uuid: d for d in service.backend.list_domains(include_inactive=True)}
            break
        except Exception as exc:  # the hypervisor is not up yet
            if attempt + 1 >= tries:
                log.error(
                    "autostart: the hypervisor does not answer (%s); no VM is autostarted", exc
                )
                return []
            time.sleep(pause)
    out: list[tuple[str, str, object]] = []
    for uuid, wish in sorted(wishes.items(), key=lambda kv: (kv[1]["name"], kv[0])):
        name, user = wish["name"], wish["user"]
        dom = domains.get(uuid)
        if dom is None:
            with contextlib.suppress(AutostartError):
                service.autostart.forget(uuid)
            log.warning("autostart: %s (%s) is no longer defined; its wish is dropped", name, uuid)
            out.append((name, user, "not defined"))
            continue
        if dom.active:
            out.append((dom.name, user, "already running"))
            continue
        try:
            who = _identity_of(user)
        except KeyError:
            log.warning(
                "autostart: %s was marked by %s, who is no user any more; not started",
                dom.name,
                user,
            )
            out.append((dom.name, user, "no such user"))
            continue
        with service.backend.pinned(dom.name, uuid):  # the VM of the wish, whatever its name
            reply = service.handle(who, Request("start", {"domain": dom.name}), NullInteraction())
        if reply.ok:
            log.info("autostart: started %s as %s", dom.name, user)
        else:
            log.warning("autostart: %s not started as %s: %s", dom.name, user, reply.message)
        out.append((dom.name, user, reply))
    return out


def libvirt_flagged(service) -> list[str]:
    """The VMs carrying libvirt's own autostart flag, sorted: libvirtd starts them when the
    host boots, before svirtd and without any of its checks (no RBAC, no Chinese Wall against
    what runs, no realm quota, no sVirt pair).  ``svirsh autostart`` never sets that flag;
    root's virsh can."""
    return sorted(
        d.name for d in service.backend.list_domains(include_inactive=True) if d.autostart
    )


def warn_libvirt_flagged(service) -> list[str]:
    """At the boot pass: say, for each VM libvirtd started (or would start) by its own flag,
    that it ran outside the gate and how to bring it inside.  Returns their names."""
    try:
        names = libvirt_flagged(service)
    except Exception as exc:  # the hypervisor does not answer: the pass above said so
        log.warning("autostart: cannot list libvirt's own autostart flags: %s", exc)
        return []
    for name in names:
        log.warning(
            "autostart: %s carries libvirt's own autostart flag: libvirtd starts it at boot "
            "outside secured-virt's checks (RBAC, the Chinese Wall, the realm's quota, sVirt); "
            "mark it with `svirsh autostart %s` (root: with --as its user) and clear the flag "
            "with `virsh autostart --disable %s`",
            name,
            name,
            name,
        )
    return names
