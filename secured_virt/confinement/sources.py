"""What a device's ``<source>`` really names: the attribute libvirt reads for the device's type.

Why: libvirt reads *one* attribute of a ``<source>``, chosen by the device's type (a ``block``
disk's ``dev``, a ``file`` disk's ``file``), and silently ignores the others.  A check that
looks at "``file`` or else ``dev``" can be shown a harmless decoy while libvirt uses the other
one: ``<disk type='block'><source file='/images/ok.img' dev='/dev/sda'/>`` passed the disk fence
(and the sHype/ACM resource check) with the image, and the guest got the host's disk.  So
every check reads the source through this module, and a non-root caller's ``<source>`` may
carry no naming attribute but the ones its type uses: nothing is left for a check and libvirt
to disagree about.

The table covers every device a non-root caller may have that has a ``<source>`` (disks,
interfaces, character devices, entropy-source backends, input devices, guest memory).
Devices only root may define (host devices, filesystems, TPMs, smartcards, redirected USB)
are refused whole by ``secured_virt.confinement.devices``; a ``<source>`` anywhere else is
refused for users too.
"""

from __future__ import annotations

from lxml import etree

CHARDEVS = ("serial", "parallel", "console", "channel")

#: character device type -> the <source> attributes libvirt reads for it
#: (virDomainChrSourceDefParseXML); a pty's path only appears in live XML
_CHARDEV_SOURCES: dict[str | None, tuple[str, ...]] = {
    None: ("path",),  # no type: libvirt's default, a pty
    "pty": ("path",),
    "null": (),
    "vc": (),
    "stdio": (),
    "spicevmc": (),
    "qemu-vdagent": (),
    "spiceport": ("channel",),
    "dbus": ("channel",),
    "file": ("path", "append"),
    "dev": ("path",),
    "pipe": ("path",),
    "unix": ("path", "mode"),
    "tcp": ("mode", "host", "service", "tls"),
    "udp": ("mode", "host", "service"),
    "nmdm": ("master", "slave"),
}

#: device kind -> {device type: the <source> attributes libvirt reads for that type}
SOURCE_ATTRS: dict[str, dict[str | None, tuple[str, ...]]] = {
    "disk": {
        None: ("file",),  # no type: libvirt's default, a file
        "file": ("file",),
        "block": ("dev",),
        "dir": ("dir",),
        "network": ("protocol", "name", "query", "tls", "tlsHostname"),
        "volume": ("pool", "volume", "mode"),
        "nvme": ("type", "managed", "namespace"),
        "vhostuser": ("type", "path"),
    },
    "interface": {
        "network": ("network", "portgroup", "portid"),
        "bridge": ("bridge",),
        "direct": ("dev", "mode"),
        "vdpa": ("dev",),
        "vhostuser": ("type", "path", "mode"),
        "server": ("address", "port"),
        "client": ("address", "port"),
        "mcast": ("address", "port"),
        "udp": ("address", "port"),
        "internal": ("name",),
        "ethernet": (),
        "user": ("dev",),
        "hostdev": ("managed",),
    },
    **{tag: _CHARDEV_SOURCES for tag in CHARDEVS},
    "backend": _CHARDEV_SOURCES,  # <rng><backend model='egd' type=...>: a character device
    "input": {
        None: (),
        "mouse": (),
        "keyboard": (),
        "tablet": (),
        "passthrough": ("evdev",),
        "evdev": ("dev", "grab", "repeat", "grabToggle"),
    },
    # guest memory: <memoryBacking><source type='file|anonymous|memfd'/> names no path (that
    # is in qemu.conf); a <memory> device's <source> has only children (its <path> is refused
    # by the device allow-list)
    "memoryBacking": {None: ("type",)},
    "memory": {None: ()},
}

#: attributes that may sit on any source of that kind without naming anything
_NEUTRAL = {"disk": ("startupPolicy", "index")}


class SourceError(ValueError):
    """A ``<source>`` whose meaning depends on which attribute one reads."""


def _kind(source) -> str | None:
    parent = source.getparent()
    if parent is None:
        return None
    kind = etree.QName(parent).localname
    if kind == "backend":
        grand = parent.getparent()
        return kind if grand is not None and etree.QName(grand).localname == "rng" else None
    return kind if kind in SOURCE_ATTRS else None


def _what(device) -> str:
    kind = etree.QName(device).localname
    line = f"line {device.sourceline}: " if device.sourceline else ""
    target = device.find("target")
    name = target.get("dev") if kind == "disk" and target is not None else None
    return f"{line}{kind} {name}" if name else f"{line}<{kind} type='{device.get('type')}'>"


def check_unambiguous(source) -> None:
    """Raise SourceError unless ``<source>`` element ``source`` carries only the attributes
    libvirt reads for its device's type, and is its device's only ``<source>``."""
    kind = _kind(source)
    device = source.getparent()
    if kind is None:
        where = etree.QName(device).localname if device is not None else "?"
        line = f"line {source.sourceline}: " if source.sourceline else ""
        raise SourceError(
            f"{line}a <source> inside <{where}> is only allowed in definitions made by root"
        )
    if len(device.findall("source")) > 1:
        raise SourceError(
            f"{_what(device)}: more than one <source>; libvirt would use one and ignore the "
            "other, so give exactly one"
        )
    by_type = SOURCE_ATTRS[kind]
    dtype = device.get("type")
    used = by_type.get(dtype)
    if used is None:
        raise SourceError(
            f"{_what(device)}: a <source> for type '{dtype}' is only allowed in definitions "
            "made by root"
        )
    naming = {a for attrs in by_type.values() for a in attrs}
    extra = sorted(a for a in source.attrib if a in naming and a not in used)
    unknown = sorted(
        a for a in source.attrib if a not in naming and a not in _NEUTRAL.get(kind, ())
    )
    if extra or unknown:
        shown = ", ".join(f"{a}=" for a in extra + unknown)
        wanted = ", ".join(f"{a}=" for a in used) or "no attributes"
        raise SourceError(
            f"{_what(device)}: its <source> also has {shown} which libvirt ignores for type "
            f"'{dtype or 'default'}' (it reads {wanted}); give only what libvirt uses, so "
            "what is checked is what is used"
        )


def check_domain_sources(root) -> None:
    """check_unambiguous for every ``<source>`` libvirt interprets in domain XML ``root``
    (everything but ``<metadata>``'s content)."""
    for child in root.iterchildren(tag=etree.Element):
        if child.tag == "metadata":
            continue
        for source in child.iter("source"):
            check_unambiguous(source)


def disk_source(disk) -> tuple[str, str] | None:
    """(disk type, what libvirt uses) of a ``<disk>``: the path of a file, block or dir disk,
    ``pool/volume`` of a volume, ``protocol:name`` of a network disk; None without a source.

    Reads exactly the attribute libvirt reads for the type (and the first ``<source>``, as
    libvirt does), whatever else the element carries."""
    dtype = disk.get("type") or "file"
    src = disk.find("source")
    if src is None:
        return None
    if dtype in ("file", "block", "dir"):
        (attr,) = SOURCE_ATTRS["disk"][dtype]
        value = src.get(attr)
    elif dtype == "volume":
        pool, vol = src.get("pool"), src.get("volume")
        value = f"{pool}/{vol}" if pool and vol else None
    elif dtype == "network":
        proto, name = src.get("protocol"), src.get("name")
        value = f"{proto}:{name}" if proto and name else None
    else:
        value = src.get("path")
    return (dtype, value) if value else None
