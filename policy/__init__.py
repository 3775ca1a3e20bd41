"""sHype/ACM for secured-virt: what may run, and share, with what.

This package reads Xen's security-policy XML, compiles it the way Xen 3.3 did (ssidrefs, binary
policy, map), emulates the hypervisor's mediation hooks (Chinese Wall, Simple Type Enforcement,
policy update, relabel) and offers the XSM management API (``policy.xsm``).  It knows nothing
of users or roles and imports nothing from ``rbac`` or ``secured_virt``.

Labels are identified by (policy name, label name), never by raw ssidref (seed 001): the same
label means the same thing on every host; its local ssidref is computed from the active compiled
policy when a domain is instantiated.  The label string is ``ACM:<policy>:<label>``.

Policies
--------
``AcmPolicy.from_file(path)`` / ``AcmPolicy.from_xml(data, source="name.xml")``
    parse + validate (lxml, no entities/DTD/network, XSD in ``policy/schemas``, size limit) +
    semantic checks.  Raises ``PolicyFileError`` with ``.file``, ``.line``, ``.message``,
    ``.xserr`` and ``.problems`` (every problem found); ``str()`` is ``file:line: message``.
``p.name``, ``p.version`` ("1.0"), ``p.version_tuple``, ``p.header`` (PolicyHeader incl.
``from_policy``), ``p.ste_types``, ``p.chwall_types`` (tuples, file order),
``p.conflict_sets`` (ConflictSet: name, types), ``p.vm_labels`` (VmLabel: name, ste_types,
chwall_types, from_name), ``p.resource_labels`` (ResourceLabel: name, ste_type, from_name),
``p.bootstrap``, ``p.xml`` (exact bytes), ``p.to_xml()``, ``p.evolve(**changes)``,
``AcmPolicy.from_parts(header, ste_types=..., ...)``, ``p.is_default()``.
``policy.examples()`` -> {name: path} of the bundled examples; ``policy.example(name)``.

Compilation
-----------
``c = p.compile()`` or ``policy.compile_file(path)`` -> ``CompiledPolicy``:
``c.ssidref(vm_label)``, ``c.resource_ssidref(res_label)``, ``c.label_for(ssidref)``,
``c.resource_label_for(ssidref)``, ``c.vm_order`` (index = ssid; 0 is ``__UNLABELED__``,
1 the bootstrap label), ``c.res_order``, ``c.vm[name]`` (LabelInfo), ``c.res[name]``,
``c.binary`` (bytes), ``c.map_text``, ``c.sha1``, ``c.stem`` (``example/client_v1``),
``c.write_files(directory)`` (``<stem>.bin`` and ``<stem>.map``, atomically).
``policy.binfmt.unpack_policy(c.binary)`` decodes a binary; ``policy.mapfile.parse_map(text)``
reads a map (``label2ssidref``).

Mediation
---------
``m = Mediator(compiled, dom0="Domain-0", dom0_label=None)``; Domain-0 runs from the start.
Labels may be given as ``"blue"`` (active policy), ``"ACM:xm-test:blue"``, ``Label(...)`` or
None (unlabeled).  Resources are ``{name: label}`` or pairs; a label None is unlabeled.

* ``m.domain_create(key, label, resources=())`` -> RunningDomain, raises ``MediationDenied``
  (``.hook``, ``.rule``, ``.reason``, ``.details``, ``.xserr``, ``.verdict``).
  ``domain_restore``/``migrate_in`` are creates; ``domain_destroy``/``domain_save``/
  ``migrate_out`` are destroys (exact undo).
* ``m.check_domain_create(key_or_None, label, resources=())`` -> ``Verdict`` (dry run);
  ``m.can_run(label)``; ``m.dry_run(label, resources)`` -> ``DryRunReport`` (every item).
* ``m.share_resource(vm_label, resource_label, resource=None)`` -> Verdict (STE).
* ``m.authorization(label)`` -> Verdict (Domain-0's STE types include the label's).
* ``m.check_evtchn(a, b, kind="unbound"|"interdomain")``, ``m.check_grant(a, granting)`` ->
  Verdict; ``m.evtchn_bind(a, b)``/``m.grant_map(a, b)`` -> channel id (recorded, replayed on
  updates), ``m.evtchn_close(id)``/``m.grant_unmap(id)``, ``m.channels()``.
* ``m.relabel(key, new_label, old_label=None)`` -> RunningDomain, raises MediationDenied;
  ``m.check_relabel(...)`` -> Verdict.
* ``m.update_policy(new_compiled)`` -> ``UpdateResult`` (renames, removed labels, relabeled
  domains), raises ``PolicyUpdateRefused`` (``.errors`` = [UpdateError(code, detail,
  message)], ``.pairs`` = [(code, detail)], ``.xserr``); ``m.check_update(new)`` -> the errors.
* ``m.rebuild([(key, label[, resources]), ...])`` -> list of problems (reality is counted).
* ``m.running()`` -> {key: RunningDomain(key, domid, policy, label, ssidref, resources)},
  ``m.label_of(key)``, ``m.counters`` (dict), ``m.chwall_state()``, ``m.compiled``.

``Verdict``: ``allowed`` (also ``bool()``), ``hook``, ``rule`` (label, state, authorization,
chinese_wall, ste, inaccessible, replay, allow), ``reason`` (a sentence saying what to do),
``code`` (XSERR, 0 if allowed), ``details`` (mapping), ``explain()``, ``as_dict()``.  Treat it
as immutable; label-only decisions write their sentence on first read.  ``DryRunReport``:
``items`` [(item, Verdict)], ``allowed``, ``lines()`` (PERMITTED/DENIED), ``as_dict()``.
Counters (``m.counters``): chwall_eval/denied, auth_eval/denied, res_eval/denied,
ec_eval/denied/cachehit, gt_eval/denied/cachehit, domains_created/destroyed,
relabels(_refused), updates(_refused), rebuilds.

XSM management API (``policy.xsm``)
-----------------------------------
``host = policy.xsm.XsmHost(state_dir)`` loads the boot policy (or DEFAULT, or - after a daemon
restart within the same boot - the policy that was loaded); ``host.mediator`` is the Mediator
of the active policy; ``host.warnings`` lists start-up problems.
Policy calls return ``PolicyState`` (``.ok``, ``.xserr``, ``.message``, ``.xs_ref``, ``.repr``,
``.flags``, ``.version``, ``.errors`` [(code, detail)], ``.problems``, ``.as_dict()``):
``set_policy(xml, flags, overwrite=False)``, ``get_policy()``, ``reset_policy()``, and every
edit of ``host.policy(name=None)`` (XsmPolicy: ``get_header``/``set_header``,
``get_types``/``add_type``/``rm_type`` per component "STE"/"CHWALL",
``get_conflict_sets``/``add_conflict_set``/``rm_conflict_set``,
``get_labels(ACM_LABEL_VM|ACM_LABEL_RES)``/``add_label``/``rm_label``,
``get_xml``/``get_map``/``get_binary``).  Other host calls return plain values or raise
``XsmError``: ``get_xstype()`` (1 = ACM, 0 = none), ``get_xstype_name()``,
``rm_boot_policy()``, ``rm_policy(name)``, ``list_policies()``, ``installed(name)``,
``label_names(kind, policy)``; ``vm_get_label``/``vm_set_label``/``vm_relabel``/
``vm_rm_label``; ``resource_*`` = ``vbd_*`` (get/set/relabel through the backing resource,
canonical names ``phy:/dev/..``, ``file:/abs``, ``tap:<t>:/abs``, ``vlan:N``);
``vif_get_label``/``vif_set_label``/``vif_relabel``; ``get_labeled_resources()``;
``dry_run(vm, resources, vifs)``, ``domain_create(vm, resources, vifs)``,
``domain_destroy(vm)``, ``can_run(label)``.

Labels and codes
----------------
``format_label(policy, label)`` -> ``"ACM:<policy>:<label>"``; ``parse_label(text,
default_policy)`` -> ``Label(policy, name, kind)`` (also reads ``policy=P,label=L``,
``P:L`` and ``INV_ACM:P:L``).  Error codes: ``Xserr`` (Xen 3.3's XSERR numbers, positive,
0 = success); hypervisor update codes ``policy.constants.ACM_*`` (0x100-0x104).

Documented choices
------------------
* Names: no ``:`` (Xen), and no whitespace/control characters, ``,`` or ``=`` in labels (the
  map file and the ``policy=P,label=L`` form could not carry them); policy names are
  dot-separated ``[A-Za-z0-9_+-]`` parts, because they become paths.  A VM label may not hold
  two CHWALL types of one conflict set (the user guide's rule; it keeps the wall sound).
* Compilation matches Xen 3.3 byte for byte for policies whose VM labels all carry
  ChineseWallTypes (all of Xen's examples); see ``policy.compiler`` for the one difference.
* Examples live flat in ``policy/examples/<PolicyName>-security_policy.xml`` (Xen used
  directories for the dots); ``xm-test-new`` keeps the file name of xm-test's suite while its
  policy is named ``xm-test``.  ``mytest``/``mytest_update`` are the user guide's examples.
* ``__UNLABELED__`` is ssid 0 in every policy and never disappears in an update.
* Installing a policy for boot only (or just installing it) is allowed while another policy
  is loaded (Xen refused any set without LOAD); replacing the loaded one needs LOAD.

Modules, each importing only modules listed before it
-----------------------------------------------------
``constants``, ``errors``, ``verdict``, ``names``, ``labels``, ``xmlsafe``, ``safefile``,
``binfmt``
    vocabulary, error types, decisions, name rules, safe XML parsing and file writing, the
    binary layout;
``parts``
    what a policy says (header, types, conflict sets, labels), as plain data;
``reader``, ``writer``
    XML in (every check, every problem at once) and out;
``compiled``, ``mapfile``, ``compiler``
    the compiled policy, its ``.map`` text, and the Xen 3.3 compilation that makes both;
``model``
    :class:`AcmPolicy`: the parts plus ``from_xml``/``from_file``/``to_xml``/``compile``;
``mediation/`` (``replay``, ``state``, ``sharing``, ``lifecycle``, ``change``), ``mediator``
    the emulated hypervisor hooks, and their facade :class:`Mediator`;
``xsm/`` (``records``, ``editor``, ``labelstore``, ``resources``, ``host``)
    the XSM management API;
``mcs``
    sVirt's MCS categories (imports no other policy module): category sets, dominance, unique
    category pairs per running VM with per-realm categories, the emulated MCS open hook.
"""

from __future__ import annotations

from pathlib import Path

from .compiled import CompiledPolicy, LabelInfo, ResourceInfo
from .constants import (
    DEFAULT_POLICY_NAME,
    INACCESSIBLE,
    UNLABELED,
    XS_INST_BOOT,
    XS_INST_LOAD,
    XS_POLICY_ACM,
    XS_POLICY_NONE,
)
from .errors import (
    LabelError,
    MediationDenied,
    PolicyError,
    PolicyFileError,
    PolicyUpdateRefused,
    Problem,
    UpdateError,
    Xserr,
    XsmError,
)
from .labels import Label, format_label, parse_label
from .mediator import DOM0, Mediator, RunningDomain, UpdateResult
from .model import AcmPolicy, ConflictSet, FromPolicy, PolicyHeader, ResourceLabel, VmLabel
from .verdict import DryRunReport, Verdict

__all__ = [
    "DEFAULT_POLICY_NAME",
    "DOM0",
    "INACCESSIBLE",
    "UNLABELED",
    "XS_INST_BOOT",
    "XS_INST_LOAD",
    "XS_POLICY_ACM",
    "XS_POLICY_NONE",
    "AcmPolicy",
    "CompiledPolicy",
    "ConflictSet",
    "DryRunReport",
    "FromPolicy",
    "Label",
    "LabelError",
    "LabelInfo",
    "MediationDenied",
    "Mediator",
    "PolicyError",
    "PolicyFileError",
    "PolicyHeader",
    "PolicyUpdateRefused",
    "Problem",
    "ResourceInfo",
    "ResourceLabel",
    "RunningDomain",
    "UpdateError",
    "UpdateResult",
    "Verdict",
    "VmLabel",
    "Xserr",
    "XsmError",
    "compile_file",
    "example",
    "examples",
    "format_label",
    "parse_label",
]


def compile_file(path: str | Path) -> CompiledPolicy:
    """Read, validate and compile a policy file (offline; ``svirt-admin policy compile``)."""
    return AcmPolicy.from_file(path).compile()


def examples() -> dict[str, Path]:
    """The bundled example policies: file stem (``xm-test-new``) -> path."""
    from importlib import resources

    root = resources.files(__name__).joinpath("examples")
    suffix = "-security_policy.xml"
    return {p.name[: -len(suffix)]: Path(str(p)) for p in root.iterdir() if p.name.endswith(suffix)}


def example(name: str) -> AcmPolicy:
    """One bundled example policy by file stem, e.g. ``example("example.client_v1")``."""
    try:
        path = examples()[name]
    except KeyError:
        raise KeyError(f"no example policy {name!r}; have {sorted(examples())}") from None
    return AcmPolicy.from_file(path)
