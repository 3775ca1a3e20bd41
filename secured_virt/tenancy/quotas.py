"""Realm quotas: how much a realm may have, and the sentence that says why a request is over.

Why these measures (root's ``<Quota vms vcpus memory bytes>``):

* ``vms`` — how many VMs the realm has, defined or running: counted when a request would add
  one (define or create of a new name, a restore of a VM the host does not know);
* ``vcpus`` and ``memory`` — what the realm's *running* VMs may hold at once, each VM counted
  at its maximum (``<vcpu>``, ``<memory>``: what it can grow to live without another check),
  counted at every request that makes a VM run (start, create, restore, a revert to a
  running snapshot); a definition that alone exceeds them is refused at define (it could
  never start);
* ``bytes`` — the capacity of the volumes in the realm's pool (capacity, not allocation: a
  sparse image may fill up), counted at vol-create-as.

A change of amount (``setvcpus``, ``setmem``, ``setmaxmem``, live or ``--config``) is checked
too (:func:`resize_refusal`): a raise of what a VM may hold is a new definition of it, so the
definition it leaves must fit the limits alone, as at define, and a raise of a running VM's
live ceiling must fit beside the realm's other running VMs, as at start.  Without it a tenant
could define within the quota and then grow the VM past it.  A change that raises nothing
(a VM shrunk, or grown within the maximum already counted) is never refused, so a VM over a
lowered quota can always be brought back under it.

Pure functions over numbers the service gathers; every refusal names the limit, the current
use and what the request would add, so the person knows what to free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from secured_virt.sizes import pretty

_UNITS = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
    "p": 1024**5,
    "pib": 1024**5,
    "pb": 1000**5,
    "e": 1024**6,
    "eib": 1024**6,
    "eb": 1000**6,
}


def scaled(text, default_unit: str = "b") -> int:
    """A size as virsh reads one (``vshCommandOptScaledInt``): digits and an optional unit
    (b, k/KiB, KB = 1000, M, MiB, MB, ... E); ValueError with the reason otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text!r}")
        return text
    if not isinstance(text, str):
        raise ValueError(f"invalid size {text!r}")
    s = text.strip()
    digits = len(s) - len(s.lstrip("0123456789"))
    num, unit = s[:digits], s[digits:].strip().lower() or default_unit
    if not num or not num.isascii() or len(num) > 20 or unit not in _UNITS:
        raise ValueError(
            f"invalid size '{text}': a whole number with an optional unit "
            "(b, K or KiB, KB, M or MiB, MB, G or GiB, GB, T, P, E)"
        )
    value = int(num) * _UNITS[unit]
    if value >= 1 << 64:
        raise ValueError(f"invalid size '{text}': too large")
    return value


def domain_size(domain_xml: str) -> tuple[int, int]:
    """(vCPUs, memory in bytes) a domain may hold at most: ``<vcpu>`` and ``<memory>`` (the
    larger of it and ``<maxMemory>`` when memory may be hot-plugged)."""
    vcpus, memory, max_memory = _size_parts(domain_xml)
    return vcpus, max(memory, max_memory)


def _size_parts(domain_xml: str) -> tuple[int, int, int]:
    """(``<vcpu>``, ``<memory>`` in bytes, ``<maxMemory>`` in bytes or 0)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(domain_xml.encode(), parser)
    vcpu_text = (root.findtext("vcpu") or "1").strip()
    vcpus = int(vcpu_text) if vcpu_text.isdigit() else 1
    mem = {"memory": 0, "maxMemory": 0}
    for tag in mem:
        el = root.find(tag)
        if el is not None and (el.text or "").strip().isdigit():
            unit = (el.get("unit") or "KiB").lower()
            mem[tag] = int(el.text.strip()) * _UNITS.get(unit, 1024)
    return vcpus, mem["memory"], mem["maxMemory"]


#: what each resizing operation changes (``Resize.what``)
RESIZES = ("vcpus", "memory", "maxmem")


@dataclass(frozen=True, slots=True)
class Resize:
    """A change of amount a request asks for, for the ``realm_quota`` step: ``what`` is
    ``vcpus`` (setvcpus: a count), ``memory`` (setmem: bytes) or ``maxmem`` (setmaxmem:
    bytes); ``live`` and ``config`` are virsh's flags as the backend gets them (neither:
    --current, the running VM if it runs, else its definition)."""

    what: str
    amount: int
    live: bool = False
    config: bool = False

    def __post_init__(self) -> None:
        if self.what not in RESIZES:
            raise ValueError(f"unknown resize {self.what!r}: one of {', '.join(RESIZES)}")

    def sides(self, running: bool) -> tuple[str, ...]:
        """Which definitions the change reaches: ``live`` (the running instance) and/or
        ``config`` (the persistent one the next start uses)."""
        current = not self.live and not self.config
        out = []
        if running and (self.live or current):
            out.append("live")
        if self.config or (current and not running):
            out.append("config")
        return tuple(out)


def resized(domain_xml: str, resize: Resize) -> tuple[tuple[int, int], tuple[int, int]]:
    """((vCPUs, memory) the definition may hold now, what it may hold after ``resize``),
    counted as :func:`domain_size` counts.  setvcpus and setmem change current amounts, which
    the hypervisor keeps within the maximum: a count above it would raise the maximum (xl's
    configuration does), so it is counted as one; setmaxmem replaces ``<memory>`` (a
    hot-plug ``<maxMemory>`` stays)."""
    vcpus, memory, max_memory = _size_parts(domain_xml)
    before = (vcpus, max(memory, max_memory))
    if resize.what == "vcpus":
        after = (max(vcpus, resize.amount), before[1])
    elif resize.what == "memory":
        after = (vcpus, max(before[1], resize.amount))
    else:
        after = (vcpus, max(resize.amount, max_memory))
    return before, after


@dataclass(frozen=True, slots=True)
class _Limits:
    vms: int | None = None
    vcpus: int | None = None
    memory: int | None = None


def resize_refusal(
    realm: str,
    quota,
    usage: Usage,
    name: str,
    *,
    before: tuple[int, int],
    after: tuple[int, int],
    running: bool,
) -> str | None:
    """Why VM ``name`` of ``realm`` may not grow from ``before`` to ``after`` (vCPUs, memory
    bytes) under ``quota`` (None: it may).  Only what grows is checked, with define's words:
    the definition must fit the limits alone; and with ``running`` (the change reaches the
    running instance) start's words: beside the realm's other running VMs, ``usage`` counted
    as define and start count it."""
    grows_cpu, grows_mem = after[0] > before[0], after[1] > before[1]
    if not (grows_cpu or grows_mem):
        return None
    limits = _Limits(
        vcpus=quota.vcpus if grows_cpu else None, memory=quota.memory if grows_mem else None
    )
    return vm_refusal(
        realm, limits, usage, name, size=after, adds_vm=False, runs=running, defines=True
    )


@dataclass(slots=True)
class Usage:
    """What a realm has now: its VMs (name -> running?) and, per running VM, its size."""

    vms: dict[str, bool] = field(default_factory=dict)
    running: dict[str, tuple[int, int]] = field(default_factory=dict)

    def without(self, name: str) -> Usage:
        return Usage(
            {k: v for k, v in self.vms.items() if k != name},
            {k: v for k, v in self.running.items() if k != name},
        )


def _list(names, limit: int = 6) -> str:
    names = sorted(names)
    more = f", and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def vm_refusal(
    realm: str,
    quota,
    usage: Usage,
    name: str,
    *,
    size: tuple[int, int],
    adds_vm: bool,
    runs: bool,
    defines: bool,
) -> str | None:
    """Why VM ``name`` (``size`` = (vCPUs, memory bytes)) may not be added to / run in
    ``realm`` under ``quota`` (None: it fits).  ``adds_vm``: the realm would have one more VM;
    ``runs``: the VM will run (counted with the others running); ``defines``: a definition
    (it must fit the limits alone)."""
    vcpus, mem = size
    what = f"realm '{realm}'"
    if adds_vm and quota.vms is not None and len(usage.vms) + 1 > quota.vms:
        return (
            f"{what} may have at most {quota.vms} VM{'s' if quota.vms != 1 else ''} and has "
            f"{len(usage.vms)} ({_list(usage.vms) or 'none'}); '{name}' would be one more. "
            "Undefine one, or ask root to raise the realm's <Quota vms=...>"
        )
    if defines:
        if quota.vcpus is not None and vcpus > quota.vcpus:
            return (
                f"'{name}' has {vcpus} vCPUs and {what} may run at most {quota.vcpus} at once: "
                "it could never start. Give it fewer, or ask root to raise <Quota vcpus=...>"
            )
        if quota.memory is not None and mem > quota.memory:
            return (
                f"'{name}' has {pretty(mem)} of memory and {what} may run at most "
                f"{pretty(quota.memory)} at once: it could never start. Give it less, or ask "
                "root to raise <Quota memory=...>"
            )
    if not runs:
        return None
    others = usage.without(name).running
    used_cpu = sum(c for c, _m in others.values())
    used_mem = sum(m for _c, m in others.values())
    shown = _list(f"{n} {c}" for n, (c, _m) in others.items()) or "none running"
    if quota.vcpus is not None and used_cpu + vcpus > quota.vcpus:
        return (
            f"{what} may run {quota.vcpus} vCPUs at once; its running VMs hold {used_cpu} "
            f"({shown}) and '{name}' needs {vcpus}: {used_cpu + vcpus} > {quota.vcpus}. "
            "Stop one, or ask root to raise the realm's <Quota vcpus=...>"
        )
    if quota.memory is not None and used_mem + mem > quota.memory:
        shown = _list(f"{n} {pretty(m)}" for n, (_c, m) in others.items()) or "none running"
        return (
            f"{what} may run {pretty(quota.memory)} of memory at once; its running VMs hold "
            f"{pretty(used_mem)} ({shown}) and '{name}' needs {pretty(mem)}: "
            f"{pretty(used_mem + mem)} > {pretty(quota.memory)}. Stop one, or ask root to "
            "raise the realm's <Quota memory=...>"
        )
    return None


def bytes_refusal(realm: str, quota, volumes: dict[str, int], name: str, capacity: int):
    """Why a volume ``name`` of ``capacity`` bytes may not be created in ``realm``'s pool
    whose volumes have ``volumes`` (name -> capacity); None: it fits."""
    if quota.bytes is None:
        return None
    used = sum(volumes.values())
    if used + capacity <= quota.bytes:
        return None
    n = len(volumes)
    return (
        f"realm '{realm}' may hold {pretty(quota.bytes)} of volumes; its {n} volume"
        f"{'s hold' if n != 1 else ' holds'} {pretty(used)} ({used} bytes) and '{name}' needs "
        f"{pretty(capacity)} ({capacity} bytes): {pretty(used + capacity)} > "
        f"{pretty(quota.bytes)}. Delete a volume (svirsh vol-delete), or ask root to raise the "
        "realm's <Quota bytes=...>"
    )
