"""The device allow-list: what a non-root caller's domain may contain, however it gets there.

Why: a domain definition is a list of host resources for libvirt (running as root) to hand to
QEMU: files, device nodes, sockets, NICs, programs to run.  Every path that changes a domain's
devices (define, create, attach-disk, attach-interface, and whatever the operation table adds:
restore of a user-writable save image, a redefinition) must apply the *same* rule, or the
loosest path decides: ``attach-interface VM direct eth0 --config`` put a macvtap on a host NIC
into a domain whose definition with the same device ``define`` refused.  So there is one
entry point for a whole domain (``check_user_domain``) and one for a single device as an
attach command builds it (``check_user_device``, which checks the device in a domain's
context with the very same tables).

The rule: nothing from ``FORBIDDEN_FOR_USERS`` anywhere, no element of ``_FORBIDDEN_AT`` where
it sits, no host-path attribute, only allow-listed backends (``_USER_CHOICES``), every
``<source>`` unambiguous (``secured_virt.confinement.sources``) and every disk inside the
image directories (``secured_virt.confinement.disks``).  Root acting as itself is not limited;
root acting ``--as`` a user is limited like that user (the callers decide who is which).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lxml import etree

from . import disks, sources


class DevicePolicyError(ValueError):
    """Something a non-root caller's domain may not have; the message says what and why."""


#: elements a non-root caller may not put anywhere in a domain definition: each is a way to run
#: code or reach host files, devices or sockets as the hypervisor's (or libvirt's) user.
FORBIDDEN_FOR_USERS = {
    "emulator": "a custom emulator binary",
    "hostdev": "host device pass-through",
    "{http://libvirt.org/schemas/domain/qemu/1.0}commandline": "raw QEMU command-line arguments",
    "{http://libvirt.org/schemas/domain/qemu/1.0}capabilities": "raw QEMU capabilities",
    "{http://libvirt.org/schemas/domain/qemu/1.0}override": "raw QEMU device properties",
    "{http://libvirt.org/schemas/domain/xen/1.0}commandline": "raw device-model arguments",
    "{http://libvirt.org/schemas/domain/bhyve/1.0}commandline": "raw bhyve arguments",
    "{http://libvirt.org/schemas/domain/lxc/1.0}namespace": "host namespaces to share",
    "filesystem": "host directory pass-through",
    "seclabel": "a security label of its own (it could switch sVirt confinement off)",
    "smartcard": "host smartcard pass-through",
    "redirdev": "USB redirection from host devices",
    "shmem": "host shared memory",
    "bootloader": "a host program that Xen runs as root to boot it",
    "bootloader_args": "arguments for a host bootloader run as root",
    "lease": "a lock-manager lease on a host file",
    "pstore": "a host file as the guest's persistent store",
    "backenddomain": "a device backend in another domain",
    "dataStore": "a second host file for a disk's data, which the disk rule does not see",
}

#: <os> children that name host files the hypervisor would load (kernel, firmware, NVRAM, shim)
FORBIDDEN_OS_FILES = ("kernel", "initrd", "dtb", "loader", "nvram", "shim")

#: elements refused where they sit, keyed by their (grand)parent's tag and their own
_FORBIDDEN_AT = {
    **{("os", tag): "a host file for the hypervisor to load" for tag in FORBIDDEN_OS_FILES},
    ("acpi", "table"): "a host file loaded as an ACPI table",
    ("interface", "script"): "a host script run when the interface comes up",
    ("interface", "downscript"): "a host script run when the interface goes down",
    ("memory", "source", "path"): "a host file or device as guest memory",
    ("tpm", "backend", "source"): "a host path for the TPM's state or socket",
    ("reservations", "source"): "a host socket for SCSI persistent reservations",
    ("resource", "partition"): "a host cgroup partition of its own choosing",
}

#: (element, attribute): attributes that name a host path, device node or socket
_HOST_PATH_ATTRS = {
    ("graphics", "socket"): "a unix socket at a host path",
    ("listen", "socket"): "a unix socket at a host path",
    ("graphics", "address"): "a D-Bus bus on the host",
    ("gl", "rendernode"): "a host device node for rendering",
    ("acceleration", "rendernode"): "a host device node for rendering",
    ("backend", "tap"): "a host device node for the network backend",
    ("backend", "vhost"): "a host device node for the network backend",
    ("backend", "logFile"): "a host file for the network backend's log",
    ("rom", "file"): "a host file as the device's ROM, which the guest can read",
    ("entry", "file"): "a host file handed to the guest firmware, which the guest can read",
    ("log", "file"): "a host file for the device's log, opened by root's virtlogd",
    ("quoteGenerationService", "path"): "a host unix socket for TDX quotes",
}

#: character devices (and an EGD entropy source, which is one): the host sides a user may use
_CHARDEVS = ("serial", "parallel", "console", "channel")
_HOST_PATH_CHARDEV_TYPES = ("file", "dev", "pipe", "unix")
_USER_CHARDEV_TYPES = (
    None,
    "null",
    "vc",
    "pty",
    "stdio",
    "spicevmc",
    "spiceport",
    "qemu-vdagent",
    "dbus",
)
_CHARDEV_WHY = {
    **{t: f"a {t} on the host as its source" for t in _HOST_PATH_CHARDEV_TYPES},
    "tcp": "a network socket on the host, reaching services bound to it",
    "udp": "a network socket on the host, reaching services bound to it",
    "nmdm": "a host null-modem device",
}
_HOST_AUDIO = "the host's sound devices or sound server, which the guest could record"
_SOCKET_NET = "QEMU socket networking on a host address and port"


@dataclass(frozen=True, slots=True)
class _Choice:
    """An attribute that picks a host-side backend.  ``allowed`` is an allow-list (a backend
    libvirt adds later stays root's until someone looks at it); ``why`` explains known others."""

    attr: str
    allowed: tuple[str | None, ...]
    why: dict[str, str]

    def problem(self, el) -> str | None:
        value = el.get(self.attr)
        if value in self.allowed:
            return None
        users = ", ".join(a for a in self.allowed if a)
        return self.why.get(value) or f"{self.attr}={value!r}; users may choose {users}"


#: (parent, element) -> the backends a non-root caller may choose for it
_USER_CHOICES = {
    **{("devices", tag): _Choice("type", _USER_CHARDEV_TYPES, _CHARDEV_WHY) for tag in _CHARDEVS},
    ("rng", "backend"): _Choice("type", _USER_CHARDEV_TYPES, _CHARDEV_WHY),
    ("devices", "interface"): _Choice(
        "type",
        ("network", "bridge"),  # bridge: the only kind the xl backend has
        {
            "ethernet": "a host network device set up by script",
            "direct": "a host network interface (macvtap), bypassing root's networks",
            "hostdev": "a host NIC's function passed through",
            "vdpa": "a host vDPA device node",
            "vhostuser": "a vhost-user unix socket at a host path",
            "user": "user-mode networking, which reaches the host's own loopback services",
            **{t: _SOCKET_NET for t in ("server", "client", "mcast", "udp")},
        },
    ),
    ("devices", "input"): _Choice(
        "type",
        ("mouse", "keyboard", "tablet"),
        {
            t: "a host input device, which could log the host's keys"
            for t in ("passthrough", "evdev")
        },
    ),
    ("tpm", "backend"): _Choice(
        "type",
        ("emulator",),
        {
            "passthrough": "the host's own TPM",
            "external": "a host socket of a TPM emulator not started for this domain",
        },
    ),
    ("devices", "graphics"): _Choice(
        "type",
        ("vnc", "spice", "rdp", "egl-headless", "dbus"),
        {t: "a window on the host's display" for t in ("sdl", "desktop")},
    ),
    ("devices", "audio"): _Choice(
        "type",
        ("none", "spice", "dbus"),
        {
            "file": "a host file for the sound output",
            **{t: _HOST_AUDIO for t in ("alsa", "oss", "pulseaudio", "pipewire", "jack", "sdl")},
        },
    ),
    ("os", "smbios"): _Choice(
        "mode",
        (None, "emulate", "sysinfo"),
        {"host": "the host's own SMBIOS data, serial numbers included"},
    ),
}

#: the host files an entropy source of model 'random' may read ("": QEMU's default)
RNG_FILES = ("", "/dev/random", "/dev/urandom", "/dev/hwrng")


def _where(el) -> tuple[str, ...]:
    """Local names of el's grandparent, parent and el (a foreign namespace does not hide an
    element: some libvirt parsers match children by local name)."""
    tags: list[str] = []
    while el is not None and len(tags) < 3:
        tags.insert(0, etree.QName(el).localname)
        el = el.getparent()
    return tuple(tags)


def device_problem(el) -> str | None:
    """Why a non-root user may not have this element in a domain definition (or None)."""
    where = _where(el)
    why = FORBIDDEN_FOR_USERS.get(el.tag) or FORBIDDEN_FOR_USERS.get(where[-1])
    if why:
        return why
    if any(etree.QName(name).namespace for name in el.attrib):
        return "a namespaced attribute, which libvirt reads by its local name"
    why = _FORBIDDEN_AT.get(where[-2:]) or _FORBIDDEN_AT.get(where)
    if why:
        return why
    for attr in el.attrib:
        why = _HOST_PATH_ATTRS.get((where[-1], attr))
        if why:
            return why
    choice = _USER_CHOICES.get(where[-2:])
    why = choice.problem(el) if choice else None
    if why:
        return why
    rng_file = (el.text or "").strip() if el.get("model") == "random" else ""
    if where[-2:] == ("rng", "backend") and rng_file not in RNG_FILES:
        return f"a host file other than {', '.join(RNG_FILES[1:])} as entropy source"
    return None


def _interpreted_elements(root):
    """The elements of a domain XML that libvirt interprets: all but <metadata>'s content,
    which it keeps as opaque data."""
    yield root
    for child in root.iterchildren(tag=etree.Element):
        if child.tag != "metadata":
            yield from child.iter(tag=etree.Element)


def check_user_elements(root) -> None:
    """Raise DevicePolicyError unless every element libvirt interprets in parsed domain XML
    ``root`` is on the allow-list and every ``<source>`` is unambiguous.  The disk fence is
    not part of it: for a definition root made (a VM a user starts), the images root chose
    outside the image directories are root's business, and ``disks.check_domain_images``
    re-checks the ones users can write."""
    for el in _interpreted_elements(root):
        why = device_problem(el)
        if why:
            raise DevicePolicyError(
                f"{_line(el)}<{etree.QName(el).localname}> ({why}) is only "
                "allowed in definitions made by root"
            )
    try:
        sources.check_domain_sources(root)
    except sources.SourceError as exc:
        raise DevicePolicyError(str(exc)) from None


def check_user_domain(root, dirs) -> list[str]:
    """Raise DevicePolicyError unless parsed domain XML ``root`` follows the allow-list (every
    element libvirt interprets, every ``<source>``, every disk inside ``dirs`` with its
    headers read now); return the host files its disks reach (images and backing files,
    symlinks resolved).  What define and create apply to a non-root caller's XML."""
    check_user_elements(root)
    try:
        return disks.check_domain_disks(root, dirs)
    except disks.DiskPolicyError as exc:
        raise DevicePolicyError(str(exc)) from None


def check_user_device(device, dirs) -> list[str]:
    """check_user_domain for one device (a ``<disk>``, ``<interface>``, ...) as an attach
    command would add it: checked inside a domain's ``<devices>``, so every table applies to
    it exactly as it would in a definition."""
    root = etree.Element("domain")
    dev = copy.deepcopy(device)
    for el in dev.iter():  # its lines would be the wrapper's, not the caller's input
        el.sourceline = 0
    etree.SubElement(root, "devices").append(dev)
    return check_user_domain(root, dirs)


def _line(el) -> str:
    return f"line {el.sourceline}: " if el.sourceline else ""
