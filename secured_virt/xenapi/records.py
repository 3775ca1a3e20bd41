"""Service replies as Xen-API records: VM, host, XSPolicy state.

Field names are the wire names of xend 3.x / xapi (``name_label``, ``power_state``,
``security_label``, ...); 64-bit numbers become strings on the wire (xmlrpc._write).  Refs are
bare UUIDs, as xend 3.x used them.

A VM record's integer fields (``domid``, ``memory_*``, ``VCPUs_*``) are decimal strings, as
xapi sends every ``int`` field and xend sent every number (its ``stringify``): tools written
for the Xen-API read them with ``int()``.  That is also the cheaper answer to parse: an
``<int>`` element is three more parser events per field, and ``VM.get_all_records`` over
1,000 VMs is mostly the client's parsing (docs/xenapi.md, "Numbers").  ``other_config``
carries a key only when it says something: ``owner`` and ``realm`` when the VM has them,
``autostart: "true"`` when it autostarts, ``persistent: "false"`` when it is transient.  An
absent key is the usual case (no owner or realm, a defined VM that does not autostart): the
same two constant strings on every record were an eighth of a 1,000-VM answer's parsing.
"""

from __future__ import annotations

import uuid
from typing import Any

#: virsh's state words -> Xen-API power states
POWER = {
    "running": "Running",
    "idle": "Running",
    "blocked": "Running",
    "in shutdown": "Running",
    "paused": "Paused",
    "pmsuspended": "Suspended",
    "saved": "Suspended",
    "shut off": "Halted",
    "crashed": "Crashed",
}

XS_POLICY_ACM = 1
XS_INST_BOOT = 1
XS_INST_LOAD = 2


def host_uuid(hostname: str) -> str:
    """A stable ref for the one host this front-end serves."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"secured-virt-host:{hostname}"))


def policy_uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"secured-virt-acm-policy:{name}"))


def power_state(row: dict[str, Any]) -> str:
    return POWER.get(str(row.get("state")), "Unknown")


#: the fields of a listing's row that ``vm_record`` reads (a record is a function of these)
VM_ROW_FIELDS = (
    "uuid",
    "name",
    "state",
    "id",
    "max_mem_kib",
    "mem_kib",
    "vcpus",
    "acm_label",
    "owner",
    "realm",
    "persistent",
    "autostart",
)


def vm_record(row: dict[str, Any], host_ref: str) -> dict[str, Any]:
    """A VM record from one row of ``list --all --label --managed-save``."""
    state = power_state(row)
    mem = str(int(row.get("max_mem_kib") or 0) * 1024)
    vcpus = str(int(row.get("vcpus") or 0))
    other = {}
    if row.get("owner"):
        other["owner"] = str(row["owner"])
    if row.get("realm"):
        other["realm"] = str(row["realm"])
    if not row.get("persistent"):
        other["persistent"] = "false"
    if row.get("autostart"):
        other["autostart"] = "true"
    return {
        "uuid": row["uuid"],
        "name_label": row["name"],
        "name_description": "",
        "power_state": state,
        "is_a_template": False,
        "is_control_domain": False,
        "domid": "-1" if row.get("id") is None else str(int(row["id"])),
        "memory_static_max": mem,
        "memory_dynamic_max": mem,
        "memory_target": str(int(row.get("mem_kib") or 0) * 1024),
        "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus,
        "resident_on": host_ref if state in ("Running", "Paused") else "OpaqueRef:NULL",
        "security_label": row.get("acm_label") or "",
        "other_config": other,
    }


def host_record(info: dict[str, Any], ref: str) -> dict[str, Any]:
    """A host record from ``nodeinfo``."""
    return {
        "uuid": ref,
        "name_label": info.get("hostname", ""),
        "name_description": "secured-virt host",
        "hostname": info.get("hostname", ""),
        "API_version_major": 1,
        "API_version_minor": 2,
        "API_version_vendor": "secured-virt",
        "software_version": {
            "product_brand": "secured-virt",
            "hypervisor": str(info.get("hypervisor", "")),
            "hypervisor_version": str(info.get("hypervisor_version", "")),
            "libvirt": str(info.get("libvirt_version", "")),
            "backend": str(info.get("backend", "")),
        },
        "cpu_info": {
            "cpu_count": str(info.get("cpus", "")),
            "modelname": str(info.get("cpu_model", "")),
            "speed": str(info.get("mhz", "")),
        },
        "memory_total": int(info.get("memory_kib") or 0) * 1024,
        "enabled": True,
    }


def policystate(show: dict[str, Any] | None, *, xserr: int = 0, errors: str = "") -> dict:
    """xs_policystate {xserr, xs_ref, repr, type, flags, version, errors}."""
    import base64

    show = show or {}
    return {
        "xserr": int(xserr),
        "xs_ref": policy_uuid(show["policy"]) if show.get("policy") else "",
        "repr": show.get("xml") or "",
        "type": XS_POLICY_ACM,
        "flags": int(show.get("flags") or 0),
        "version": str(show.get("version") or ""),
        "errors": base64.b64encode(errors.encode()).decode() if errors else "",
    }
