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


#: elements a non-root caller may not put into a domain definition: each is a way to run code
#: or reach host devices as the hypervisor's user.
FORBIDDEN_FOR_USERS = {
    "emulator": "a custom emulator binary",
    "hostdev": "host device pass-through",
    "{http://libvirt.org/schemas/domain/qemu/1.0}commandline": "raw QEMU command-line arguments",
    "{http://libvirt.org/schemas/domain/qemu/1.0}capabilities": "raw QEMU capabilities",
    "filesystem": "host directory pass-through",
    "seclabel": "a security label of its own (it could switch sVirt confinement off)",
    "smartcard": "host smartcard pass-through",
    "redirdev": "USB redirection from host devices",
    "shmem": "host shared memory",
}

#: <os> children that name host files the hypervisor would load (kernel, firmware, NVRAM)
FORBIDDEN_OS_FILES = ("kernel", "initrd", "dtb", "loader", "nvram")

#: character devices whose source is a host path (file, device, pipe, unix socket)
_CHARDEVS = ("serial", "parallel", "console", "channel")
_HOST_PATH_CHARDEV_TYPES = ("file", "dev", "pipe", "unix")


def _user_xml_problem(el) -> str | None:
    """Why a non-root user may not have this element in a domain definition (or None)."""
    why = FORBIDDEN_FOR_USERS.get(el.tag)
    if why:
        return why
    parent = el.getparent()
    ptag = parent.tag if parent is not None else None
    if ptag == "os" and el.tag in FORBIDDEN_OS_FILES:
        return "a host file for the hypervisor to load"
    if el.tag in _CHARDEVS and el.get("type") in _HOST_PATH_CHARDEV_TYPES:
        return f"a {el.get('type')} on the host as its source"
    if el.tag == "script" and ptag == "interface":
        return "a host script run when the interface comes up"
    if el.tag == "interface" and el.get("type") == "ethernet":
        return "a host network device set up by script"
    return None


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
    secured_virt.disks (images inside ``disk_dirs``).  Returns (name, new_xml).
    """
    root = parse_domain_xml(xml)
    if not privileged:
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
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
