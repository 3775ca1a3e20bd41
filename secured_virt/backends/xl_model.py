"""One Xen domain's configuration as plain data, to and from xl.cfg, xl's JSON and domain XML.

The gate speaks libvirt domain XML (it reads names, UUIDs and our <metadata> from it), so the
xl backend accepts and returns domain XML and keeps xl.cfg files on disk.  This module is the
translation, for the subset of settings secured-virt manages: name, uuid, guest type, memory,
vCPUs, disks, bridged interfaces, life-cycle actions, and our own two lines:

* ``access_control = ['policy=P,label=L']`` - the sHype/ACM label in the xm/ACM format of the
  seeds (Xen's own ``xl`` ignores unknown keys; the ACM mediation is ours);
* ``svirt_owner = "alice"`` - the owning user.

Reading, the label is also taken in the other two spellings configs of that era carry (see
``label_from_config``): seed 001's ``acm_label = ['labelname=L,policyname=P']`` and Xen 3.0's
raw ``ssidref = N``, which names a label only through one policy's numbering and so is handed
to the caller's resolver (the active policy's map) with a warning naming file:line.  We write
``access_control`` only, and remove the other two whenever we write a label.

They appear in domain XML as ``<metadata><svirt:vm><svirt:owner/><svirt:label/></svirt:vm>``
in the project namespace, exactly as the libvirt backend stores them.

XML elements outside that subset are refused when they would change what the guest can
reach (``<hostdev>``, ``<emulator>``, network disks, libvirt-network interfaces) and ignored
when they only describe virtual hardware xl sets up by itself (consoles, serial, video,
input, controllers, memballoon, graphics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from . import domxml
from .base import BackendError
from .xl_cfg import XlConfig

SVIRT_NS = "https://secured-virt.org/xmlns/svirt/1"
OWNER_KEY = "svirt_owner"
LABEL_KEY = "access_control"

_LABEL_PART = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")
_OWNER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}\Z")
_VDEV = re.compile(r"^[a-z][a-z0-9]{1,31}\Z")
_ACTIONS = {
    "destroy",
    "restart",
    "rename-restart",
    "preserve",
    "coredump-destroy",
    "coredump-restart",
    "soft-reset",
}
# XML type word <-> xl guest type
_OS_TO_XL = {"hvm": "hvm", "linux": "pv", "xen": "pv", "xenpvh": "pvh"}
_XL_TO_OS = {"hvm": "hvm", "pv": "linux", "pvh": "xenpvh"}
_IGNORED_DEVICES = {
    "console",
    "serial",
    "parallel",
    "channel",
    "video",
    "input",
    "controller",
    "memballoon",
    "graphics",
    "sound",
    "rng",
    "watchdog",
}
_REFUSED_DEVICES = {
    "emulator": "a custom device model (emulator)",
    "hostdev": "PCI/USB pass-through (hostdev)",
    "filesystem": "host filesystem sharing",
    "smartcard": "smartcards",
    "redirdev": "USB redirection",
    "shmem": "shared memory devices",
}


def label_value(policy: str, label: str) -> list[str]:
    """The access_control value for (policy, label), validated."""
    for what, v in (("policy", policy), ("label", label)):
        if not v or not _LABEL_PART.match(v):
            raise BackendError(
                "invalid-arg",
                f"invalid ACM {what} name {v!r}: letters, digits, '_', '.', ':' and '-' only",
            )
    return [f"policy={policy},label={label}"]


def parse_label(
    value, keys: tuple[str, str] = ("policy", "label")
) -> tuple[str | None, str | None]:
    """(policy, label) from an access_control value (a list of 'k=v,k=v' strings); ``keys``
    names the two keys (acm_label's are ``policyname`` and ``labelname``)."""
    items = value if isinstance(value, list) else [value]
    policy = label = None
    for item in items:
        if not isinstance(item, str):
            continue
        for part in item.split(","):
            k, _, v = part.strip().partition("=")
            if k.strip() == keys[0]:
                policy = v.strip() or None
            elif k.strip() == keys[1]:
                label = v.strip() or None
    return policy, label


ACM_LABEL_KEY = "acm_label"
SSIDREF_KEY = "ssidref"
#: the label an ssidref nobody could translate gets: its policy is never the active one, so
#: the domain is refused wherever a label is checked (fail closed, and it says why)
UNRESOLVED_POLICY = "__SSIDREF__"


@dataclass(frozen=True, slots=True)
class LabelSource:
    """Where a config's label came from: (policy, label) as written, or a legacy ssidref."""

    policy: str | None = None
    label: str | None = None
    ssidref: int | None = None
    where: str = ""  # file:line of the setting


def label_from_config(cfg: XlConfig) -> LabelSource:
    """The label a config gives, in any of its spellings (refused when they disagree).

    * ``access_control = ['policy=P,label=L']`` (xm 3.0.3-3.3, what we write);
    * ``acm_label = ['labelname=L,policyname=P']`` (seed 001);
    * ``ssidref = N`` (xm 3.0.0-3.0.2): a number, meaningful only under one policy's map.

    One entry only (xm refused "Multiple access_control definitions"); access_control and
    acm_label must name the same label; an ssidref beside a named label is refused (3.0.3 made
    them mutually exclusive) rather than guessed at."""

    def line(key: str) -> str:
        lines = [st.line for st in cfg.settings if st.key == key]
        return f"{cfg.source}:{lines[-1] if lines else 0}"

    named: list[tuple[str, tuple[str | None, str | None]]] = []
    for key, keys in (
        (LABEL_KEY, ("policy", "label")),
        (ACM_LABEL_KEY, ("policyname", "labelname")),
    ):
        if key not in cfg:
            continue
        value = cfg.get(key)
        items = value if isinstance(value, list) else [value]
        if len([i for i in items if isinstance(i, str) and i.strip()]) > 1:
            raise BackendError(
                "invalid-arg",
                f"{line(key)}: {key} has more than one entry; a domain has one label "
                f"(keep one: {key} = ['{keys[0]}=P,{keys[1]}=L'])",
            )
        named.append((key, parse_label(value, keys)))
    if len(named) == 2 and named[0][1] != named[1][1]:
        raise BackendError(
            "invalid-arg",
            f"{line(ACM_LABEL_KEY)}: acm_label names {named[1][1]} but access_control "
            f"({line(LABEL_KEY)}) names {named[0][1]}; keep one of them",
        )
    if SSIDREF_KEY in cfg:
        raw = cfg.get(SSIDREF_KEY)
        if named:
            raise BackendError(
                "invalid-arg",
                f"{line(SSIDREF_KEY)}: ssidref beside {named[0][0]} ({line(named[0][0])}): "
                "remove the ssidref line, the label name is what counts",
            )
        number = _ssidref(raw)
        if number is None:
            raise BackendError(
                "invalid-arg", f"{line(SSIDREF_KEY)}: ssidref {raw!r} is not a 32-bit number"
            )
        return LabelSource(ssidref=number, where=line(SSIDREF_KEY))
    if named:
        key, (policy, label) = named[0]
        return LabelSource(policy, label, where=line(key))
    return LabelSource()


def _ssidref(raw) -> int | None:
    if isinstance(raw, str):
        try:
            raw = int(raw.strip(), 0)
        except ValueError:
            return None
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 0xFFFFFFFF:
        return raw
    return None


@dataclass(slots=True)
class XlDisk:
    vdev: str
    target: str  # path of the file or device ('' for an empty cdrom)
    format: str = "raw"
    readonly: bool = False
    cdrom: bool = False
    block: bool = False  # a block device (backendtype phy)

    def spec(self) -> str:
        """xl disk spec (xl-disk-configuration(5)); target last because it may hold commas."""
        parts = [f"format={self.format}", f"vdev={self.vdev}"]
        parts.append(f"access={'ro' if self.readonly else 'rw'}")
        if self.cdrom:
            parts.append("devtype=cdrom")
        if self.block:
            parts.append("backendtype=phy")
        parts.append(f"target={self.target}")
        return ",".join(parts)

    @classmethod
    def from_spec(cls, spec: str) -> XlDisk:
        """Parse a disk spec: keyword form (target= last) or legacy 'phy:/dev/x,xvda,w'."""
        spec = spec.strip()
        head = spec.split(",", 1)[0]
        if "=" in head:
            fields: dict[str, str] = {}
            rest = spec
            while rest:
                if rest.startswith("target="):
                    fields["target"] = rest[len("target=") :]
                    break
                part, _, rest = rest.partition(",")
                k, _, v = part.strip().partition("=")
                fields[k.strip()] = v.strip()
                rest = rest.lstrip()
            disk = cls(
                vdev=fields.get("vdev", ""),
                target=fields.get("target", ""),
                format=fields.get("format", "raw"),
                readonly=fields.get("access", "rw") in ("ro", "r"),
                cdrom=fields.get("devtype") == "cdrom",
                block=fields.get("backendtype") == "phy",
            )
        else:
            parts = [p.strip() for p in spec.split(",")]
            target = parts[0]
            vdev = parts[1] if len(parts) > 1 else ""
            access = parts[2] if len(parts) > 2 else "w"
            block = False
            fmt = "raw"
            for prefix in ("phy:", "file:", "tap:aio:", "tap:qcow2:", "aio:", "qcow2:", "raw:"):
                if target.startswith(prefix):
                    block = prefix == "phy:"
                    if "qcow2" in prefix:
                        fmt = "qcow2"
                    target = target[len(prefix) :]
                    break
            cdrom = vdev.endswith(":cdrom")
            disk = cls(
                vdev=vdev.removesuffix(":cdrom"),
                target=target,
                format=fmt,
                readonly=access.startswith("r"),
                cdrom=cdrom,
                block=block,
            )
        if not disk.vdev:
            raise BackendError("invalid-arg", f"disk spec {spec!r} has no vdev")
        return disk


@dataclass(slots=True)
class XlNic:
    bridge: str
    mac: str | None = None
    model: str | None = None

    def spec_parts(self) -> list[str]:
        parts = []
        if self.mac:
            parts.append(f"mac={self.mac}")
        parts.append(f"bridge={self.bridge}")
        if self.model:
            parts.append(f"model={self.model}")
        return parts

    def spec(self) -> str:
        return ",".join(self.spec_parts())

    @classmethod
    def from_spec(cls, spec: str) -> XlNic:
        fields = {}
        for part in spec.split(","):
            k, _, v = part.strip().partition("=")
            if k:
                fields[k] = v.strip()
        return cls(
            bridge=fields.get("bridge", "xenbr0"),
            mac=fields.get("mac", "").lower() or None,
            model=fields.get("model") or None,
        )


@dataclass(slots=True)
class XlDomain:
    name: str
    uuid: str = ""
    type: str = "pv"  # pv | hvm | pvh
    max_mem_kib: int = 0
    mem_kib: int = 0
    vcpus: int = 1
    max_vcpus: int = 0
    disks: list[XlDisk] = field(default_factory=list)
    nics: list[XlNic] = field(default_factory=list)
    actions: dict[str, str] = field(default_factory=dict)  # on_poweroff/on_reboot/on_crash
    kernel: dict[str, str] = field(default_factory=dict)  # kernel/ramdisk/cmdline/bootloader
    owner: str | None = None
    label_policy: str | None = None
    label: str | None = None

    @property
    def os_type(self) -> str:
        return _XL_TO_OS.get(self.type, self.type)

    # -- xl.cfg -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: XlConfig) -> XlDomain:
        name = cfg.get("name")
        if not isinstance(name, str) or not name:
            raise BackendError("invalid-arg", f'{cfg.source}: the config has no name = "..."')
        gtype = cfg.get("type") or ("hvm" if cfg.get("builder") == "hvm" else "pv")
        memory = _int(cfg.get("memory"), 128)
        maxmem = _int(cfg.get("maxmem"), memory)
        vcpus = _int(cfg.get("vcpus"), 1)
        disks = [XlDisk.from_spec(s) for s in _strings(cfg.get("disk"))]
        nics = [XlNic.from_spec(s) for s in _strings(cfg.get("vif"))]
        src = label_from_config(cfg)  # a legacy ssidref is resolved by the backend (xl_labels)
        policy, label = src.policy, src.label
        owner = cfg.get(OWNER_KEY)
        return cls(
            name=name,
            uuid=str(cfg.get("uuid") or ""),
            type=str(gtype),
            max_mem_kib=max(maxmem, memory) * 1024,
            mem_kib=memory * 1024,
            vcpus=vcpus,
            max_vcpus=_int(cfg.get("maxvcpus"), vcpus),
            disks=disks,
            nics=nics,
            actions={
                k: str(cfg.get(k))
                for k in ("on_poweroff", "on_reboot", "on_crash")
                if isinstance(cfg.get(k), str)
            },
            kernel={
                k: str(cfg.get(k))
                for k in ("kernel", "ramdisk", "cmdline", "bootloader")
                if isinstance(cfg.get(k), str)
            },
            owner=owner if isinstance(owner, str) and owner else None,
            label_policy=policy,
            label=label,
        )

    def apply_to(self, cfg: XlConfig) -> XlConfig:
        """Write this domain's settings into cfg (other settings are kept)."""
        cfg.set("name", self.name)
        if self.uuid:
            cfg.set("uuid", self.uuid)
        cfg.set("type", self.type)
        cfg.remove("builder")
        cfg.set("memory", _mib(self.mem_kib))
        if self.max_mem_kib and self.max_mem_kib != self.mem_kib:
            cfg.set("maxmem", _mib(self.max_mem_kib))
        else:
            cfg.remove("maxmem")
        cfg.set("vcpus", self.vcpus)
        if self.max_vcpus and self.max_vcpus != self.vcpus:
            cfg.set("maxvcpus", self.max_vcpus)
        else:
            cfg.remove("maxvcpus")
        for k, v in self.kernel.items():
            cfg.set(k, v)
        for k, v in self.actions.items():
            cfg.set(k, v)
        self.write_devices(cfg)
        self.write_metadata(cfg)
        return cfg

    def write_devices(self, cfg: XlConfig) -> None:
        if self.disks:
            cfg.set("disk", [d.spec() for d in self.disks])
        else:
            cfg.remove("disk")
        if self.nics:
            cfg.set("vif", [n.spec() for n in self.nics])
        else:
            cfg.remove("vif")

    def write_metadata(self, cfg: XlConfig) -> None:
        """Owner and label into cfg; the label only as access_control (the other spellings
        are removed, so the file never holds two labels)."""
        cfg.remove(ACM_LABEL_KEY)
        cfg.remove(SSIDREF_KEY)
        if self.label:
            cfg.set(LABEL_KEY, label_value(self.label_policy or "", self.label))
        else:
            cfg.remove(LABEL_KEY)
        if self.owner:
            cfg.set(OWNER_KEY, self.owner)
        else:
            cfg.remove(OWNER_KEY)

    def to_config_text(self) -> str:
        header = "# Written by secured-virt from a domain XML definition.\n"
        return self.apply_to(XlConfig(header)).text

    # -- xl list -l JSON ----------------------------------------------------------------
    @classmethod
    def from_json(cls, entry: dict) -> XlDomain:
        """From one element of ``xl list -l`` ({"domid": N, "config": {...}})."""
        config = entry.get("config") or {}
        c_info = config.get("c_info") or {}
        b_info = config.get("b_info") or {}
        target = int(b_info.get("target_memkb") or 0)
        maxmem = int(b_info.get("max_memkb") or target)
        vcpus = b_info.get("avail_vcpus")
        max_vcpus = int(b_info.get("max_vcpus") or 0)
        ncpus = len(vcpus) if isinstance(vcpus, list) and vcpus else (max_vcpus or 1)
        disks = []
        for d in config.get("disks") or []:
            disks.append(
                XlDisk(
                    vdev=str(d.get("vdev", "")),
                    target=str(d.get("pdev_path") or ""),
                    format=str(d.get("format") or "raw"),
                    readonly=not d.get("readwrite", 1),
                    cdrom=bool(d.get("is_cdrom")),
                    block=d.get("backend") == "phy",
                )
            )
        nics = [
            XlNic(
                bridge=str(n.get("bridge") or ""),
                mac=(n.get("mac") or None),
                model=n.get("model") or None,
            )
            for n in config.get("nics") or []
        ]
        return cls(
            name=str(c_info.get("name") or ""),
            uuid=str(c_info.get("uuid") or ""),
            type=str(c_info.get("type") or "pv"),
            max_mem_kib=maxmem,
            mem_kib=target,
            vcpus=ncpus,
            max_vcpus=max_vcpus or ncpus,
            disks=disks,
            nics=nics,
        )

    # -- domain XML ---------------------------------------------------------------------
    @classmethod
    def from_domain_xml(cls, xml: str) -> XlDomain:
        root = domxml.parse(xml)
        if root.tag != "domain":
            raise BackendError("invalid-arg", f"expected a <domain> document, found <{root.tag}>")
        name = (root.findtext("name") or "").strip()
        if not name:
            raise BackendError("invalid-arg", "the domain XML has no <name>")
        os_type = (root.findtext("os/type") or "hvm").strip()
        if os_type not in _OS_TO_XL:
            raise BackendError(
                "invalid-arg",
                f"<os><type>{os_type}</type> is not a Xen guest type: use hvm, linux (PV) or "
                "xenpvh",
            )
        max_mem = _xml_kib(root.find("memory"))
        cur_mem = _xml_kib(root.find("currentMemory")) or max_mem
        if not max_mem:
            raise BackendError("invalid-arg", "the domain XML has no <memory>")
        vcpu_el = root.find("vcpu")
        max_vcpus = int((vcpu_el.text or "1").strip()) if vcpu_el is not None else 1
        vcpus = int(vcpu_el.get("current", max_vcpus)) if vcpu_el is not None else 1
        dom = cls(
            name=name,
            uuid=(root.findtext("uuid") or "").strip(),
            type=_OS_TO_XL[os_type],
            max_mem_kib=max_mem,
            mem_kib=cur_mem,
            vcpus=vcpus,
            max_vcpus=max_vcpus,
        )
        for key in ("kernel", "initrd", "cmdline"):
            text = root.findtext(f"os/{key}")
            if text:
                dom.kernel["ramdisk" if key == "initrd" else key] = text.strip()
        if root.findtext("bootloader"):
            dom.kernel["bootloader"] = root.findtext("bootloader").strip()
        for event in ("on_poweroff", "on_reboot", "on_crash"):
            action = (root.findtext(event) or "").strip()
            if action:
                if action not in _ACTIONS:
                    raise BackendError("invalid-arg", f"<{event}>{action}</{event}> is not valid")
                dom.actions[event] = action
        devices = root.find("devices")
        for el in devices if devices is not None else []:
            if not isinstance(el.tag, str):
                continue
            if el.tag == "disk":
                dom.disks.append(_disk_from_xml(el))
            elif el.tag == "interface":
                dom.nics.append(_nic_from_xml(el))
            elif el.tag in _REFUSED_DEVICES:
                raise BackendError(
                    "invalid-arg",
                    f"line {el.sourceline}: {_REFUSED_DEVICES[el.tag]} is not supported by the "
                    "xl backend",
                )
            elif el.tag not in _IGNORED_DEVICES:
                raise BackendError(
                    "invalid-arg",
                    f"line {el.sourceline}: <{el.tag}> is not supported by the xl backend",
                )
        meta = root.find(f"metadata/{{{SVIRT_NS}}}vm")
        if meta is not None:
            dom.set_metadata_element(meta)
        return dom

    def set_metadata_element(self, el: etree._Element | None) -> None:
        """Take owner and label from our <svirt:vm> element (None clears both)."""
        self.owner = self.label_policy = self.label = None
        if el is None:
            return
        for child in el:
            if not isinstance(child.tag, str):
                continue
            local = etree.QName(child).localname
            if etree.QName(child).namespace not in (None, SVIRT_NS):
                raise BackendError(
                    "invalid-arg", f"the xl backend cannot store <{child.tag}> in a config file"
                )
            if local == "owner":
                owner = (child.text or "").strip()
                if owner and not _OWNER.match(owner):
                    raise BackendError("invalid-arg", f"invalid owner name {owner!r}")
                self.owner = owner or None
            elif local == "label":
                policy, label = child.get("policy") or "", child.get("name") or ""
                label_value(policy, label)  # validates
                self.label_policy, self.label = policy, label
            else:
                raise BackendError(
                    "invalid-arg",
                    f"the xl backend stores only <owner> and <label> of secured-virt's "
                    f"metadata, not <{local}>",
                )

    def metadata_xml(self) -> str | None:
        """Our <vm> element (default namespace), or None when there is neither owner nor label."""
        if not (self.owner or self.label):
            return None
        el = etree.Element(f"{{{SVIRT_NS}}}vm", nsmap={None: SVIRT_NS})
        if self.owner:
            etree.SubElement(el, f"{{{SVIRT_NS}}}owner").text = self.owner
        if self.label:
            etree.SubElement(
                el, f"{{{SVIRT_NS}}}label", policy=self.label_policy or "", name=self.label
            )
        return etree.tostring(el, encoding="unicode")

    def to_domain_xml(self, domid: int | None = None) -> str:
        root = etree.Element("domain", type="xen")
        if domid is not None:
            root.set("id", str(domid))
        etree.SubElement(root, "name").text = self.name
        if self.uuid:
            etree.SubElement(root, "uuid").text = self.uuid
        if self.owner or self.label:
            md = etree.SubElement(root, "metadata")
            md.append(etree.fromstring(self.metadata_xml()))
        etree.SubElement(root, "memory", unit="KiB").text = str(self.max_mem_kib)
        etree.SubElement(root, "currentMemory", unit="KiB").text = str(self.mem_kib)
        vcpu = etree.SubElement(root, "vcpu")
        vcpu.text = str(max(self.max_vcpus, self.vcpus))
        if self.max_vcpus and self.max_vcpus != self.vcpus:
            vcpu.set("current", str(self.vcpus))
        if "bootloader" in self.kernel:
            etree.SubElement(root, "bootloader").text = self.kernel["bootloader"]
        os_el = etree.SubElement(root, "os")
        etree.SubElement(os_el, "type").text = self.os_type
        for key, tag in (("kernel", "kernel"), ("ramdisk", "initrd"), ("cmdline", "cmdline")):
            if key in self.kernel:
                etree.SubElement(os_el, tag).text = self.kernel[key]
        for event in ("on_poweroff", "on_reboot", "on_crash"):
            if event in self.actions:
                etree.SubElement(root, event).text = self.actions[event]
        devices = etree.SubElement(root, "devices")
        for d in self.disks:
            disk = etree.SubElement(
                devices,
                "disk",
                type="block" if d.block else "file",
                device="cdrom" if d.cdrom else "disk",
            )
            etree.SubElement(disk, "driver", name="qemu" if not d.block else "phy", type=d.format)
            if d.target:
                etree.SubElement(
                    disk, "source", **({"dev": d.target} if d.block else {"file": d.target})
                )
            etree.SubElement(disk, "target", dev=d.vdev)
            if d.readonly:
                etree.SubElement(disk, "readonly")
        for n in self.nics:
            iface = etree.SubElement(devices, "interface", type="bridge")
            if n.mac:
                etree.SubElement(iface, "mac", address=n.mac)
            etree.SubElement(iface, "source", bridge=n.bridge)
            if n.model:
                etree.SubElement(iface, "model", type=n.model)
        etree.indent(root, space="  ")
        return etree.tostring(root, encoding="unicode")


def _disk_from_xml(el: etree._Element) -> XlDisk:
    dtype = el.get("type", "file")
    device = el.get("device", "disk")
    if dtype not in ("file", "block") or device not in ("disk", "cdrom"):
        raise BackendError(
            "invalid-arg",
            f"line {el.sourceline}: only file and block disks/cdroms are supported by the xl "
            f"backend (got type={dtype!r} device={device!r})",
        )
    src = el.find("source")
    target = ""
    if src is not None:
        target = src.get("file" if dtype == "file" else "dev") or ""
    tgt = el.find("target")
    vdev = tgt.get("dev") if tgt is not None else None
    if not vdev or not _VDEV.match(vdev):
        raise BackendError("invalid-arg", f"line {el.sourceline}: disk has no valid <target dev>")
    if "\n" in target or "\x00" in target:
        raise BackendError("invalid-arg", f"line {el.sourceline}: invalid disk source")
    drv = el.find("driver")
    fmt = (drv.get("type") if drv is not None else None) or "raw"
    if not re.match(r"^[a-z0-9]{1,16}\Z", fmt):
        raise BackendError("invalid-arg", f"line {el.sourceline}: invalid disk format {fmt!r}")
    return XlDisk(
        vdev=vdev,
        target=target,
        format=fmt,
        readonly=el.find("readonly") is not None or device == "cdrom",
        cdrom=device == "cdrom",
        block=dtype == "block",
    )


def _nic_from_xml(el: etree._Element) -> XlNic:
    itype = el.get("type")
    if itype != "bridge":
        raise BackendError(
            "invalid-arg",
            f"line {el.sourceline}: the xl backend supports only <interface type='bridge'> "
            f"(Xen has no libvirt networks), not type={itype!r}",
        )
    src = el.find("source")
    bridge = src.get("bridge") if src is not None else None
    if not bridge or not re.match(r"^[A-Za-z0-9_.-]{1,15}\Z", bridge):
        raise BackendError("invalid-arg", f"line {el.sourceline}: invalid bridge name {bridge!r}")
    mac_el = el.find("mac")
    mac = domxml.check_mac(mac_el.get("address", "")) if mac_el is not None else None
    model_el = el.find("model")
    model = model_el.get("type") if model_el is not None else None
    if model and not re.match(r"^[A-Za-z0-9_-]{1,32}\Z", model):
        raise BackendError("invalid-arg", f"line {el.sourceline}: invalid model {model!r}")
    return XlNic(bridge=bridge, mac=mac, model=model)


_UNITS = {
    "b": 1 / 1024,
    "bytes": 1 / 1024,
    "kb": 1000 / 1024,
    "k": 1,
    "kib": 1,
    "mb": 1000 * 1000 / 1024,
    "m": 1024,
    "mib": 1024,
    "gb": 1000**3 / 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "t": 1024**3,
    "tib": 1024**3,
}


def _xml_kib(el: etree._Element | None) -> int:
    if el is None or not (el.text or "").strip():
        return 0
    unit = (el.get("unit") or "KiB").lower()
    if unit not in _UNITS:
        raise BackendError("invalid-arg", f"unknown memory unit {el.get('unit')!r}")
    try:
        return int(int(el.text.strip()) * _UNITS[unit])
    except ValueError:
        raise BackendError("invalid-arg", f"invalid memory size {el.text!r}") from None


def _mib(kib: int) -> int:
    return (kib + 1023) // 1024


def _int(value, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return default


def _strings(value) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, str) and v.strip()]
