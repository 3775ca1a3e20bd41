"""Small, safe helpers for libvirt domain XML: build device elements, find them, read sources.

Device XML is built with lxml (never by string formatting) so a path or a network name can
never inject markup.  Parsing uses a parser with entities, DTDs and network access off.
"""

from __future__ import annotations

import re

from lxml import etree

from .base import BackendError

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
)

DISK_TYPES = ("file", "block")
DISK_MODES = ("readonly", "shareable")
INTERFACE_TYPES = ("network", "bridge", "direct")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
_TARGET = re.compile(r"^[a-z][a-z0-9]{1,31}\Z")
_WORD = re.compile(r"^[A-Za-z0-9_.+-]{1,32}\Z")
#: the <source> attribute libvirt reads for each disk type (the same table as
#: secured_virt.confinement.sources, which this room may not import; a test keeps them equal)
DISK_SOURCE_ATTR = {"file": "file", "block": "dev", "dir": "dir"}
#: the <source> attribute libvirt reads for each interface type
INTERFACE_SOURCE_ATTR = {"network": "network", "bridge": "bridge", "direct": "dev"}


def parse(xml: str) -> etree._Element:
    """Parse XML text safely; BackendError(invalid-arg) with the line on failure."""
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise BackendError("invalid-arg", "XML must not contain a DOCTYPE or entity declarations")
    try:
        return etree.fromstring(xml.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise BackendError("invalid-arg", f"XML is not well-formed: {exc}") from None


def to_text(el: etree._Element) -> str:
    return etree.tostring(el, encoding="unicode")


def check_mac(mac: str) -> str:
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise BackendError(
            "invalid-arg",
            f"invalid MAC address {mac!r}: expected six hex pairs like 52:54:00:12:34:56",
        )
    return mac.lower()


def check_target(target: str) -> str:
    if not isinstance(target, str) or not _TARGET.match(target):
        raise BackendError(
            "invalid-arg",
            f"invalid disk target {target!r}: expected a device name such as vdb, sdc or xvdb",
        )
    return target


def disk_element(
    source: str,
    target: str,
    *,
    driver: str | None = None,
    subdriver: str | None = None,
    type: str = "file",
    mode: str | None = None,
    dac_norelabel: bool = False,
) -> etree._Element:
    """The <disk> element ``virsh attach-disk`` would build for these options.

    ``dac_norelabel``: the source carries ``<seclabel model='dac' relabel='no'/>``, so libvirt's
    DAC driver leaves the file's owner alone (a guest of a set-up realm: the service gives the
    realm's images to its QEMU user itself, and a shared read-only image stays root's)."""
    if type not in DISK_TYPES:
        raise BackendError(
            "invalid-arg", f"invalid disk type {type!r}: use one of {', '.join(DISK_TYPES)}"
        )
    if mode is not None and mode not in DISK_MODES:
        raise BackendError(
            "invalid-arg", f"invalid disk mode {mode!r}: use one of {', '.join(DISK_MODES)}"
        )
    for opt, value in (("driver", driver), ("subdriver", subdriver)):
        if value is not None and (not isinstance(value, str) or not _WORD.match(value)):
            raise BackendError("invalid-arg", f"invalid disk {opt} {value!r}")
    if not isinstance(source, str) or not source or "\x00" in source:
        raise BackendError("invalid-arg", "a disk source path is required")
    check_target(target)
    disk = etree.Element("disk", type=type, device="disk")
    if driver or subdriver:
        drv = etree.SubElement(disk, "driver")
        if driver:
            drv.set("name", driver)
        if subdriver:
            drv.set("type", subdriver)
    src = etree.SubElement(disk, "source", {DISK_SOURCE_ATTR[type]: source})
    if dac_norelabel:
        etree.SubElement(src, "seclabel", model="dac", relabel="no")
    etree.SubElement(disk, "target", dev=target)
    if mode:
        etree.SubElement(disk, mode)
    return disk


def interface_element(
    itype: str, source: str, *, mac: str | None = None, model: str | None = None
) -> etree._Element:
    """The <interface> element ``virsh attach-interface`` would build for these options."""
    if itype not in INTERFACE_TYPES:
        raise BackendError(
            "invalid-arg",
            f"invalid interface type {itype!r}: use one of {', '.join(INTERFACE_TYPES)}",
        )
    if not isinstance(source, str) or not source or "\x00" in source:
        raise BackendError(
            "invalid-arg", "an interface source (network or bridge name) is required"
        )
    iface = etree.Element("interface", type=itype)
    etree.SubElement(iface, "source", {INTERFACE_SOURCE_ATTR[itype]: source})
    if mac:
        etree.SubElement(iface, "mac", address=check_mac(mac))
    if model:
        if not isinstance(model, str) or not re.match(r"^[A-Za-z0-9_-]{1,32}\Z", model):
            raise BackendError("invalid-arg", f"invalid interface model {model!r}")
        etree.SubElement(iface, "model", type=model)
    return iface


def find_disk(root: etree._Element, target: str) -> etree._Element | None:
    for disk in root.iterfind("devices/disk"):
        tgt = disk.find("target")
        if tgt is not None and tgt.get("dev") == target:
            return disk
    return None


def find_interfaces(
    root: etree._Element, itype: str, mac: str | None = None
) -> list[etree._Element]:
    mac = mac.lower() if mac else None
    out = []
    for iface in root.iterfind("devices/interface"):
        if iface.get("type") != itype:
            continue
        if mac is not None:
            m = iface.find("mac")
            if m is None or (m.get("address") or "").lower() != mac:
                continue
        out.append(iface)
    return out


def disk_sources(root: etree._Element) -> list[str]:
    """Every disk's source: path (file/block/dir), 'pool/volume', or network 'protocol:name'.

    Read by the disk's type, exactly as libvirt reads it: a block disk's ``dev``, never a
    ``file`` written beside it (libvirt ignores that one, so must every report)."""
    out = []
    for disk in root.iterfind("devices/disk"):
        src = disk.find("source")
        if src is None:
            continue
        dtype = disk.get("type") or "file"
        if dtype in DISK_SOURCE_ATTR:
            value = src.get(DISK_SOURCE_ATTR[dtype])
        elif dtype == "volume":
            pool, vol = src.get("pool"), src.get("volume")
            value = f"{pool}/{vol}" if pool and vol else None
        elif dtype == "network":
            proto, name = src.get("protocol"), src.get("name")
            value = f"{proto}:{name}" if proto and name else None
        else:
            value = src.get("path")
        if value:
            out.append(value)
    return out


def interface_sources(root: etree._Element) -> list[tuple[str, str]]:
    """(type, source) of every interface: network name, bridge, or host device ('' if none),
    each read from the attribute libvirt uses for the interface's type."""
    out = []
    for iface in root.iterfind("devices/interface"):
        itype = iface.get("type") or ""
        src = iface.find("source")
        attr = INTERFACE_SOURCE_ATTR.get(itype)
        value = (src.get(attr) or "") if src is not None and attr else ""
        out.append((itype, value))
    return out


def domain_name(xml: str) -> str:
    root = parse(xml)
    name = (root.findtext("name") or "").strip()
    if root.tag != "domain" or not name:
        raise BackendError("invalid-arg", "the XML is not a <domain> with a <name>")
    return name
