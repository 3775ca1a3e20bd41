"""secured-virt's own data on a domain: its owner and its sHype/ACM label.

Kept in the domain XML's ``<metadata>`` under one element in the project namespace, so it
travels with the domain through save images and migration streams (seed 001: a label is a
(label name, policy name) pair, never a raw ssidref)::

    <svirt:vm xmlns:svirt="https://secured-virt.org/xmlns/svirt/1">
      <svirt:owner>alice</svirt:owner>
      <svirt:label policy="example.client_v1" name="dom_Fun"/>
    </svirt:vm>
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from lxml import etree

from . import disks

NS = "https://secured-virt.org/xmlns/svirt/1"
KEY = "svirt"
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
)


@dataclass(frozen=True, slots=True)
class VmMeta:
    owner: str | None = None
    label_policy: str | None = None
    label: str | None = None

    def attrs(self) -> dict[str, str]:
        """The object attributes RBAC scopes match on (owner, label)."""
        out = {}
        if self.owner:
            out["owner"] = self.owner
        if self.label:
            out["label"] = self.label
        return out

    def to_xml(self) -> str:
        parts = [f'<svirt:vm xmlns:svirt="{NS}">']
        if self.owner:
            parts.append(f"<svirt:owner>{xml_escape(self.owner)}</svirt:owner>")
        if self.label:
            parts.append(
                f"<svirt:label policy={quoteattr(self.label_policy or '')} "
                f"name={quoteattr(self.label)}/>"
            )
        parts.append("</svirt:vm>")
        return "".join(parts)


def parse(fragment: str | None) -> VmMeta:
    """Parse our metadata element (as libvirt returns it); anything odd reads as empty."""
    if not fragment:
        return VmMeta()
    try:
        root = etree.fromstring(fragment.encode(), _PARSER)
    except etree.XMLSyntaxError:
        return VmMeta()
    if root.tag != f"{{{NS}}}vm":  # libvirt hands back the first element in NS, whatever its name
        return VmMeta()
    owner = root.findtext(f"{{{NS}}}owner")
    lab = root.find(f"{{{NS}}}label")
    return VmMeta(
        owner=owner.strip() if owner else None,
        label_policy=lab.get("policy") if lab is not None else None,
        label=lab.get("name") if lab is not None else None,
    )


def from_domain_xml(xml: str) -> tuple[str, str | None, VmMeta]:
    """(name, uuid, metadata) of a full domain XML document (e.g. inside a save image)."""
    root = parse_domain_xml(xml)
    name = (root.findtext("name") or "").strip()
    uuid = (root.findtext("uuid") or "").strip() or None
    el = root.find(f"metadata/{{{NS}}}vm")
    meta = parse(etree.tostring(el).decode()) if el is not None else VmMeta()
    return name, uuid, meta


class DomainXmlError(ValueError):
    pass


def parse_domain_xml(xml: str):
    if len(xml) > 4 * 1024 * 1024:
        raise DomainXmlError("domain XML is larger than 4 MiB")
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise DomainXmlError("domain XML must not contain a DOCTYPE or entity declarations")
    try:
        root = etree.fromstring(xml.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise DomainXmlError(f"domain XML is not well-formed: {exc}") from None
    if root.tag != "domain":
        raise DomainXmlError(f"expected a <domain> document, found <{root.tag}>")
    if not (root.findtext("name") or "").strip():
        raise DomainXmlError("domain XML has no <name>")
    return root


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


def _user_xml_problem(el) -> str | None:
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


def prepare_user_domain_xml(
    xml: str,
    owner: str | None,
    *,
    privileged: bool,
    keep: VmMeta | None = None,
    disk_dirs: tuple[str, ...] = (),
) -> tuple[str, str]:
    """Validate a domain XML from a user; set our metadata to (owner, no label), or to ``keep``
    (the metadata of the existing domain this XML redefines).

    A caller may not claim an owner or a label through the XML: labels are set with setlabel,
    which the ACM checks; ownership is the defining user.  *Every* element in our namespace is
    dropped, not only <svirt:vm>: libvirt answers a metadata query with the first element in
    the namespace, whatever its name.  A non-privileged caller's disks must also follow
    secured_virt.confinement.disks (images inside ``disk_dirs``).  Returns (name, new_xml).
    """
    root = parse_domain_xml(xml)
    if not privileged:
        for el in _interpreted_elements(root):
            why = _user_xml_problem(el)
            if why:
                raise DomainXmlError(
                    f"line {el.sourceline}: <{etree.QName(el).localname}> ({why}) is only "
                    "allowed in definitions made by root"
                )
        try:
            disks.check_domain_disks(root, disk_dirs)
        except disks.DiskPolicyError as exc:
            raise DomainXmlError(str(exc)) from None
    md = root.find("metadata")
    if md is not None:
        for el in list(md):
            if isinstance(el.tag, str) and etree.QName(el).namespace == NS:
                md.remove(el)
    meta = keep if keep is not None else VmMeta(owner=owner)
    if meta.owner or meta.label:
        if md is None:
            md = etree.SubElement(root, "metadata")
        md.append(etree.fromstring(meta.to_xml()))
    name = root.findtext("name").strip()
    return name, etree.tostring(root, encoding="unicode")


def domain_devices(xml: str) -> tuple[list[str], int]:
    """(disk source paths, number of network interfaces) of a domain XML.

    Disks are what the ACM checks as resources (STE sharing); interfaces are vif-0, vif-1, ...
    in document order, as Xen numbered them.  Disks without a host-side source (an empty CD-ROM
    drive) are skipped.
    """
    root = parse_domain_xml(xml)
    disks = []
    for src in root.iterfind("devices/disk/source"):
        path = src.get("file") or src.get("dev") or src.get("volume")
        if path:
            disks.append(("phy:" if src.get("dev") else "file:") + path)
    return disks, len(root.findall("devices/interface"))
