"""The XSM policy management API (seed 000): ``XsmHost`` for the host, ``XsmPolicy`` for one
installed policy, ``PolicyState`` records, labels on VMs, VBDs (their backing resources) and
VIFs, and the state directory that keeps all of it across restarts.

Host calls (plain data back)::

    host = XsmHost("/var/lib/secured-virt/acm")      # loads the boot policy, or DEFAULT
    host.get_xstype() -> 1 (XS_POLICY_ACM);  host.get_xstype_name() -> "ACM"
    host.set_policy(xml, flags=XS_INST_LOAD | XS_INST_BOOT, overwrite=False) -> PolicyState
    host.get_policy() -> PolicyState;  host.reset_policy() -> PolicyState
    host.rm_boot_policy();  host.rm_policy(name);  host.list_policies() -> [dict]
    host.policy(name=None) -> XsmPolicy          # get_header/set_header, get_types/add_type/
                                                 # rm_type, get_conflict_sets/add_/rm_,
                                                 # get_labels/add_label/rm_label,
                                                 # get_xml/get_map/get_binary
    host.vm_get_label(vm) / vm_set_label(vm, label, old_label=None) / vm_relabel / vm_rm_label
    host.resource_get_label(r) / resource_set_label(r, label, old_label=None)   (= vbd_*)
    host.vif_get_label(vm, i) / vif_set_label(vm, i, label, old_label=None)
    host.get_labeled_resources() -> {resource: "ACM:<policy>:<label>"}
    host.dry_run(vm, resources) / host.domain_create(vm, resources) / host.can_run(label)
    host.mediator -> the active policy's Mediator;  host.warnings -> start-up problems

Failures of label calls raise ``policy.XsmError`` (``.xserr``, ``.message``).
"""

from ..constants import (
    ACM_LABEL_ANY,
    ACM_LABEL_RES,
    ACM_LABEL_VM,
    XS_INST_BOOT,
    XS_INST_LOAD,
    XS_INST_NONE,
    XS_POLICY_ACM,
    XS_POLICY_NONE,
)
from .editor import XsmPolicy
from .host import XsmHost, builtin_default
from .labelstore import JsonLabelStore, LabelStore
from .records import PolicyState
from .resources import canonical_resource

__all__ = [
    "ACM_LABEL_ANY",
    "ACM_LABEL_RES",
    "ACM_LABEL_VM",
    "XS_INST_BOOT",
    "XS_INST_LOAD",
    "XS_INST_NONE",
    "XS_POLICY_ACM",
    "XS_POLICY_NONE",
    "JsonLabelStore",
    "LabelStore",
    "PolicyState",
    "XsmHost",
    "XsmPolicy",
    "builtin_default",
    "canonical_resource",
]
