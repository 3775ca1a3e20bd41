"""secured-virt's own data on a domain: its owner and its sHype/ACM label.

Kept in the domain XML's ``<metadata>`` under one element in the project namespace, so it
travels with the domain through save images and migration streams (seed 001: a label is a
(label name, policy name) pair, never a raw ssidref)::

    <svirt:vm xmlns:svirt="https://secured-virt.org/xmlns/svirt/1">
      <svirt:owner>alice</svirt:owner>
      <svirt:label policy="example.client_v1" name="dom_Fun"/>
      <svirt:categories>c12,c845</svirt:categories>
      <svirt:realm>acme</svirt:realm>
    </svirt:vm>

``realm`` is the management realm the VM belongs to (secured_virt.tenancy), set at define
from the defining user's realm and kept by every later write; only root moves a VM.

``categories`` is the sVirt category pair of a *running* instance (shype.categories writes it
to the live XML only, at start/create/restore); it is text here, parsed by policy.mcs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from lxml import etree

from . import names

# devices and sources load where used: root's direct list/dominfo need neither (issue 18)


# xml.sax.saxutils' escape and quoteattr, here because importing saxutils loads urllib, http,
# email and ssl (~12 ms of every direct-mode svirsh) for two string replacements
def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def quoteattr(text: str) -> str:
    text = xml_escape(text).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return '"{}"'.format(text.replace('"', "&quot;"))


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
    categories: str | None = None
    realm: str | None = None

    def attrs(self) -> dict[str, str]:
        """The object attributes RBAC scopes match on (owner, label), and the realm the
        realm check reads."""
        out = {}
        if self.owner:
            out["owner"] = self.owner
        if self.label:
            out["label"] = self.label
        if self.realm:
            out["realm"] = self.realm
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
        if self.categories:
            parts.append(f"<svirt:categories>{xml_escape(self.categories)}</svirt:categories>")
        if self.realm:
            parts.append(f"<svirt:realm>{xml_escape(self.realm)}</svirt:realm>")
        parts.append("</svirt:vm>")
        return "".join(parts)


@functools.lru_cache(maxsize=8192)
def parse(fragment: str | None) -> VmMeta:
    """Parse our metadata element (as libvirt returns it); anything odd reads as empty.
    Remembered: ``VmMeta`` is immutable and a pure function of the fragment, and the same few
    fragments come back again and again (every row of a listing, every start's read of the
    live metadata it adds its category pair to)."""
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
    cats = root.findtext(f"{{{NS}}}categories")
    realm = root.findtext(f"{{{NS}}}realm")
    return VmMeta(
        owner=owner.strip() if owner else None,
        label_policy=lab.get("policy") if lab is not None else None,
        label=lab.get("name") if lab is not None else None,
        categories=cats.strip() or None if cats else None,
        realm=realm.strip() or None if realm else None,
    )


def write(backend, name: str, meta: VmMeta) -> None:
    """Give domain ``name`` this owner and label, keeping the sVirt pair of its running
    instance.

    Why not one ``set_metadata``: the category pair belongs to the running instance only (the
    next start draws a new one), so the persistent definition is written without it and the
    live one with the pair it holds now; writing both from one VmMeta would either drop a
    running VM's pair (another start could then be handed it) or copy it into the definition.
    ``backend`` is any secured_virt backend (``lookup``, ``get_metadata``, ``set_metadata``).
    """
    info = backend.lookup(name)
    config = replace(meta, categories=None)
    if info.id is not None:
        held = parse(backend.get_metadata(name, NS)).categories
        live = replace(meta, categories=held)
        backend.set_metadata(name, _xml_or_none(live), KEY, NS, live=True, config=False)
    if info.persistent:
        backend.set_metadata(name, _xml_or_none(config), KEY, NS, live=False, config=True)


def _xml_or_none(meta: VmMeta) -> str | None:
    """Our element, or None (remove it) when it would be empty."""
    return meta.to_xml() if (meta.owner or meta.label or meta.categories or meta.realm) else None


def from_domain_xml(xml: str) -> tuple[str, str | None, VmMeta]:
    """(name, uuid, metadata) of a full domain XML document (e.g. inside a save image)."""
    root = parse_domain_xml(xml)
    name = "".join(root.find("name").itertext())  # as libvirt reads it: string(./name[1])
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


def prepare_user_domain_xml(
    xml: str,
    owner: str | None,
    *,
    privileged: bool,
    keep: VmMeta | None = None,
    disk_dirs: tuple[str, ...] = (),
    reserved_names: tuple[str, ...] = (),
    realm: str | None = None,
) -> tuple[str, str]:
    """Validate a domain XML from a user; set our metadata to (owner, no label), or to ``keep``
    (the metadata of the existing domain this XML redefines).

    A caller may not claim an owner or a label through the XML: labels are set with setlabel,
    which the ACM checks; ownership is the defining user.  *Every* element in our namespace is
    dropped, not only <svirt:vm>: libvirt answers a metadata query with the first element in
    the namespace, whatever its name.  The VM's name must follow
    secured_virt.confinement.names for everyone, root included (``reserved_names``: the
    configured host object, besides Domain-0): a VM named like the host object would run
    outside the ACM's bookkeeping.  A non-privileged caller's domain must also pass the device
    allow-list, disk fence and image checks of secured_virt.confinement.devices (images inside
    ``disk_dirs``, their headers read now).  Returns (name, new_xml).
    """
    root = parse_domain_xml(xml)
    try:
        name = names.name_of(root, reserved_names)
    except names.VmNameError as exc:
        raise DomainXmlError(str(exc)) from None
    if not privileged:
        from . import devices

        try:
            devices.check_user_domain(root, disk_dirs)
        except devices.DevicePolicyError as exc:
            raise DomainXmlError(str(exc)) from None
    md = root.find("metadata")
    if md is not None:
        for el in list(md):
            if isinstance(el.tag, str) and etree.QName(el).namespace == NS:
                md.remove(el)
    meta = keep if keep is not None else VmMeta(owner=owner, realm=realm)
    if meta.owner or meta.label or meta.realm:
        if md is None:
            md = etree.SubElement(root, "metadata")
        md.append(etree.fromstring(meta.to_xml()))
    return name, etree.tostring(root, encoding="unicode")


def domain_devices(xml: str) -> tuple[list[str], int]:
    """(disk resources, number of network interfaces) of a domain XML.

    Disks are what the ACM checks as resources (STE sharing), each read through
    ``sources.disk_source``: exactly the attribute libvirt uses for the disk's type, so a
    decoy attribute beside it is never what the ACM sees (``phy:`` for block devices,
    ``file:`` for files, directories and storage volumes, as before).  Interfaces are vif-0,
    vif-1, ... in document order, as Xen numbered them.  Disks without a host-side source (an
    empty CD-ROM drive) and network disks are skipped.
    """
    from . import sources

    root = parse_domain_xml(xml)
    found = []
    for disk in root.iterfind("devices/disk"):
        src = sources.disk_source(disk)
        if src is None or src[0] == "network":
            continue
        dtype, value = src
        if dtype == "volume":
            value = value.split("/", 1)[1]
        found.append(("phy:" if dtype == "block" else "file:") + value)
    return found, len(root.findall("devices/interface"))
