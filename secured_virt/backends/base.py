"""What every hypervisor backend offers the gate: plain data in, plain data or BackendError out.

The gate and the CLIs are written against this module only, never against libvirt or xl, so
that (a) the client side can import it without pulling in libvirt, and (b) a backend can be
swapped (libvirt for KVM/QEMU or the test driver, ``xl`` for Xen) without touching policy code.

Everything a backend returns is immutable plain data (``DomainInfo``, ``SnapshotInfo``, str,
dict); every failure is a ``BackendError`` whose ``message`` is written for the person at the
terminal - never a raw library exception or a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

#: virsh's words for domain states, by libvirt's virDomainState number (virsh-domain-monitor.c).
STATE_WORDS: tuple[str, ...] = (
    "no state",  # 0 VIR_DOMAIN_NOSTATE
    "running",  # 1 VIR_DOMAIN_RUNNING
    "idle",  # 2 VIR_DOMAIN_BLOCKED
    "paused",  # 3 VIR_DOMAIN_PAUSED
    "in shutdown",  # 4 VIR_DOMAIN_SHUTDOWN
    "shut off",  # 5 VIR_DOMAIN_SHUTOFF
    "crashed",  # 6 VIR_DOMAIN_CRASHED
    "pmsuspended",  # 7 VIR_DOMAIN_PMSUSPENDED
)

#: States in which a domain has a running instance (an id, memory in use).
ACTIVE_STATES = frozenset({"running", "idle", "paused", "in shutdown", "crashed", "pmsuspended"})

#: Error codes a BackendError may carry.  Callers switch on these, never on message text.
ERROR_CODES = frozenset(
    {
        "no-domain",  # no domain of that name
        "no-snapshot",  # no snapshot of that name on the domain
        "invalid-arg",  # the request itself is malformed (bad XML, bad size, bad name)
        "operation-failed",  # the hypervisor refused or failed (already running, not paused...)
        "connection",  # cannot reach the hypervisor (daemon down, no permission, bad URI)
        "unsupported",  # this backend/driver cannot do that at all
        "permission",  # the hypervisor itself denied it (read-only connection, polkit)
        "timeout",  # a command did not finish in time
        "no-pool",  # no storage pool of that name
        "no-volume",  # no storage volume of that name (or path) in the pool
    }
)


def virsh_order(d) -> tuple:
    """virsh list's order of rows (anything with ``id`` and ``name``): the active domains by
    id, then the inactive ones by name ignoring ASCII case (virsh's strcasecmp)."""
    return (d.id is None, d.id or 0, d.name.encode().lower())


def state_word(state: int) -> str:
    """virsh's word for a libvirt virDomainState number ("no state" for unknown numbers)."""
    if 0 <= state < len(STATE_WORDS):
        return STATE_WORDS[state]
    return "no state"


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """One domain as ``virsh dominfo``/``virsh list`` would show it."""

    name: str
    uuid: str
    id: int | None  # None when inactive
    state: str  # one of STATE_WORDS
    max_mem_kib: int
    mem_kib: int
    vcpus: int
    cpu_time_ns: int
    # None only in the row a libvirt ``resolve`` returns (not asked: service.queries'
    # _with_flags asks them where they are shown); every listing and lookup has both
    persistent: bool | None
    autostart: bool | None
    os_type: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES and self.id is not None

    def as_dict(self) -> dict:
        # every field is a scalar: a shallow copy is asdict() without its deep copies
        # (10 us a row, 0.5 ms of a 50-domain list)
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot as ``virsh snapshot-list`` shows it."""

    name: str
    creation_time: int  # seconds since the epoch
    state: str  # the domain's state when the snapshot was taken ("running", "shutoff", ...)
    description: str
    current: bool

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """One storage volume as ``virsh vol-info``/``vol-list --details`` show it (sizes in
    bytes; ``type`` is virsh's word: file, block, dir, network, netdir, ploop)."""

    name: str
    path: str
    type: str
    capacity: int
    allocation: int
    pool: str

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """One storage pool: its directory (``target/path``), state and sizes in bytes."""

    name: str
    path: str | None
    active: bool
    autostart: bool
    capacity: int
    allocation: int
    available: int

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class BackendError(Exception):
    """A hypervisor operation failed; ``message`` says what and what to do, for a person.

    ``code`` is one of ERROR_CODES and is what programs should test.
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.message = message or _DEFAULT_MESSAGES.get(code, code)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class DomainChanged(BackendError):
    """The domain behind a name is no longer the one a request was checked against."""

    def __init__(self, name: str, uuid: str) -> None:
        self.name = name
        super().__init__(
            "no-domain",
            f"domain '{name}' was undefined or replaced after the request was checked (it is "
            f"no longer the VM with UUID {uuid}); nothing was done, run the command again",
        )


class NoSuchDomain(BackendError):
    """The named domain does not exist (code ``no-domain``)."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__("no-domain", message or f"domain '{name}' not found")


_DEFAULT_MESSAGES = {
    "unsupported": "this operation is not supported by this hypervisor backend",
    "connection": "cannot connect to the hypervisor",
    "timeout": "the hypervisor command did not finish in time",
}

ProgressCallback = Callable[[int, int], None]


def report_progress(progress: ProgressCallback | None, done: int, total: int):
    """Call a progress callback; one that fails (say, its client went away) is dropped and
    None returned, so the migration - which cannot be taken back half-way - carries on."""
    if progress is None:
        return None
    try:
        progress(done, total)
    except Exception:
        return None
    return progress


@runtime_checkable
class Backend(Protocol):
    """The operations secured-virt delegates to a hypervisor, with virsh's meaning.

    Flags ``live``/``config`` follow virsh: ``live`` changes the running instance, ``config``
    the persistent definition; both False means "current" (live if running, else config).
    """

    name: str
    uri: str

    def list_domains(self, *, include_inactive: bool = False) -> list[DomainInfo]: ...
    def lookup(self, name: str) -> DomainInfo: ...
    def pinned(self, name: str, uuid: str | None) -> AbstractContextManager[None]:
        """Within the block, operations on ``name`` act on the domain with this UUID only.

        The front-end checks a request against the VM it resolved by name; if that VM were
        undefined and another defined under the same name before the action, the action would
        hit a VM nobody checked.  Inside ``pinned`` a backend either addresses the domain by
        its UUID or verifies the UUID, and raises NoSuchDomain saying the VM changed.
        """
        ...

    def start(self, name: str) -> None: ...
    def shutdown(self, name: str) -> None: ...
    def reboot(self, name: str) -> None: ...
    def reset(self, name: str) -> None: ...
    def destroy(self, name: str) -> None: ...
    def suspend(self, name: str) -> None: ...
    def resume(self, name: str) -> None: ...

    def save(self, name: str, path: str) -> None: ...
    def restore(self, path: str) -> str: ...
    def saved_image_xml(self, path: str) -> str: ...

    def define(self, xml: str) -> str: ...
    def undefine(self, name: str) -> None: ...
    def create(self, xml: str) -> str: ...
    def dumpxml(self, name: str, *, inactive: bool = False, security_info: bool = False) -> str: ...

    def setmem(self, name: str, kib: int, *, live: bool = True, config: bool = False) -> None: ...
    def setmaxmem(self, name: str, kib: int, *, config: bool = True) -> None: ...
    def setvcpus(
        self, name: str, count: int, *, live: bool = True, config: bool = False
    ) -> None: ...

    def attach_disk(
        self,
        name: str,
        source: str,
        target: str,
        *,
        driver: str | None = None,
        subdriver: str | None = None,
        type: str = "file",
        mode: str | None = None,
        live: bool = True,
        config: bool = False,
        dac_norelabel: bool = False,
    ) -> None: ...
    def detach_disk(
        self, name: str, target: str, *, live: bool = True, config: bool = False
    ) -> None: ...
    def attach_interface(
        self,
        name: str,
        itype: str,
        source: str,
        *,
        mac: str | None = None,
        model: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None: ...
    def detach_interface(
        self,
        name: str,
        itype: str,
        *,
        mac: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None: ...

    def migrate(
        self,
        name: str,
        dest_uri: str,
        *,
        live: bool = False,
        persistent: bool = False,
        undefine_source: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None: ...

    def get_autostart(self, name: str) -> bool: ...
    def set_autostart(self, name: str, flag: bool) -> None: ...

    def snapshot_create_as(
        self, name: str, snap_name: str | None = None, description: str | None = None
    ) -> str: ...
    def snapshot_list(self, name: str) -> list[SnapshotInfo]: ...
    def snapshot_revert(self, name: str, snap: str) -> None: ...
    def snapshot_delete(self, name: str, snap: str) -> None: ...

    def get_metadata(self, name: str, ns_uri: str) -> str | None: ...
    def set_metadata(
        self,
        name: str,
        xml_fragment: str | None,
        key: str,
        ns_uri: str,
        *,
        live: bool = True,
        config: bool = True,
    ) -> None: ...

    def disk_sources(self, name: str) -> list[str]: ...
    def interface_sources(self, name: str) -> list[tuple[str, str]]: ...

    def open_console(self, name: str) -> Any: ...
    def hostinfo(self) -> dict: ...
    # the catalogue's monitoring and maintenance operations (49-61, 63); a backend that
    # cannot do one raises BackendError("unsupported", <what to use instead>)
    def dommemstat(self, name: str) -> dict[str, int]: ...
    def domblkstat(self, name: str, device: str) -> dict[str, int]: ...
    def domifstat(self, name: str, device: str) -> dict[str, int]: ...
    def managed_save(self, name: str) -> None: ...
    def managed_save_remove(self, name: str) -> bool: ...
    def dump(self, name: str, path: str, *, memory_only: bool = False) -> None: ...
    def inject_nmi(self, name: str) -> None: ...
    def send_key(self, name: str, keys: list[int], *, codeset: str, holdtime: int) -> None: ...
    def get_description(self, name: str, *, title: bool = False, inactive: bool = False) -> str: ...
    def set_description(
        self, name: str, text: str, *, title: bool = False, live: bool = True, config: bool = True
    ) -> None: ...
    def vcpupin(
        self, name: str, vcpu: int, cpus: tuple[int, ...], *, live: bool, config: bool
    ) -> None: ...
    def vcpu_pin_info(self, name: str) -> list[tuple[int, tuple[int, ...]]]: ...
    def screenshot(self, name: str, screen: int = 0) -> tuple[str, bytes]: ...
    # storage (each realm's directory pool; libvirt's virStoragePool*/virStorageVol*): a
    # backend without a storage API raises BackendError("unsupported", <what to do instead>)
    def pool_info(self, pool: str) -> PoolInfo: ...
    def ensure_dir_pool(self, pool: str, path: str) -> tuple[PoolInfo, list[str]]:
        """Define, build, start and autostart a directory pool at ``path`` where missing;
        returns the pool and what was done (nothing when it was all there).  A pool of that
        name at another directory is an error, never silently redefined."""
        ...

    def vol_list(self, pool: str, *, refresh: bool = False) -> list[VolumeInfo]: ...
    def vol_info(self, pool: str, name: str) -> VolumeInfo: ...
    def vol_by_path(self, path: str) -> VolumeInfo: ...
    def vol_create_as(
        self,
        pool: str,
        name: str,
        capacity: int,
        *,
        allocation: int | None = None,
        fmt: str | None = None,
        owner: tuple[int, int] | None = None,
    ) -> VolumeInfo: ...
    def vol_delete(self, pool: str, name: str) -> None: ...
    def close(self) -> None: ...
