"""XML -> a policy, with every semantic check Xen's tools made (and a few they should have).

Why separate from the schema: an XSD can say "a Type is a string" but not "that type is
defined", "the bootstrap label exists" or "no ':' in a label".  These checks are collected, all
of them, with the line they refer to, so an administrator fixes a policy in one pass.
"""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

from lxml import etree

from .constants import INACCESSIBLE, NULL_LABEL, POLICY_NS, UNLABELED
from .errors import PolicyFileError, Problem, Xserr
from .names import label_name_problem, policy_name_problem, type_name_problem
from .parts import ConflictSet, FromPolicy, PolicyContent, PolicyHeader, ResourceLabel, VmLabel
from .xmlsafe import MAX_POLICY_BYTES, parse_untrusted, validate

_NS = "{" + POLICY_NS + "}"

_P = TypeVar("_P", bound=PolicyContent)


def _q(tag: str) -> str:
    return _NS + tag


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    return (el.text or "").strip()


def _types(parent: etree._Element, list_tag: str) -> list[tuple[str, int]]:
    """(type name, line) for every non-empty Type under every ``list_tag`` child.

    Xen's DEFAULT policy writes ``<ChineseWallTypes><Type/></ChineseWallTypes>`` to mean "no
    type": empty Type elements in a label are therefore skipped, not errors.
    """
    out = []
    for lst in parent.iterchildren(_q(list_tag)):
        for t in lst.iterchildren(_q("Type")):
            name = _text(t)
            if name:
                out.append((name, t.sourceline or 0))
    return out


def read_policy(data: bytes, source: str, max_bytes: int | None = None, *, into: type[_P]) -> _P:
    """Parse, validate and check ``data``; return it as an ``into`` (``AcmPolicy`` in practice).

    ``into`` is passed in, not imported: ``AcmPolicy`` is defined on top of this module.
    Raises PolicyFileError naming every problem found.
    """
    root = parse_untrusted(data, source, max_bytes or MAX_POLICY_BYTES)
    validate(root, source)
    problems: list[Problem] = []

    def bad(line: int, xserr: Xserr, msg: str) -> None:
        problems.append(Problem(line or 0, msg, xserr))

    # -- header --------------------------------------------------------------------------
    hdr = root.find(_q("PolicyHeader"))
    name = _text(hdr.find(_q("PolicyName"))) or ""
    pn = hdr.find(_q("PolicyName"))
    p = policy_name_problem(name)
    if p:
        bad(pn.sourceline, *p)
    fp_el = hdr.find(_q("FromPolicy"))
    from_policy = None
    if fp_el is not None:
        fp_name = _text(fp_el.find(_q("PolicyName"))) or ""
        p = policy_name_problem(fp_name)
        if p:
            bad(fp_el.sourceline, p[0], "FromPolicy: " + p[1])
        from_policy = FromPolicy(fp_name, _text(fp_el.find(_q("Version"))) or "")
    header = PolicyHeader(
        name=name,
        version=_text(hdr.find(_q("Version"))) or "",
        url=_text(hdr.find(_q("PolicyUrl"))),
        reference=_text(hdr.find(_q("Reference"))),
        date=_text(hdr.find(_q("Date"))),
        namespace_url=_text(hdr.find(_q("NameSpaceUrl"))),
        from_policy=from_policy,
    )

    # -- type definitions ----------------------------------------------------------------
    def defined_types(comp_el, list_tag, component):
        if comp_el is None:
            return []
        lst = comp_el.find(_q(list_tag))
        names = []
        for t in lst.iterchildren(_q("Type")):
            tname = _text(t) or ""
            p = type_name_problem(tname, component)
            if p:
                bad(t.sourceline, *p)
                continue
            names.append((tname, t.sourceline or 0))
        for tname, count in Counter(n for n, _ in names).items():
            if count > 1:
                line = [ln for n, ln in names if n == tname][1]
                bad(
                    line,
                    Xserr.POLICY_HAS_DUPLICATES,
                    f"{component} type {tname!r} is defined {count} times; define it once",
                )
        seen, out = set(), []
        for n, _ in names:
            if n not in seen:
                seen.add(n)
                out.append(n)
        return out

    ste_el = root.find(_q("SimpleTypeEnforcement"))
    cw_el = root.find(_q("ChineseWall"))
    ste_types = defined_types(ste_el, "SimpleTypeEnforcementTypes", "STE")
    chwall_types = defined_types(cw_el, "ChineseWallTypes", "CHWALL")
    ste_set, cw_set = set(ste_types), set(chwall_types)

    # -- conflict sets -------------------------------------------------------------------
    conflict_sets: list[ConflictSet] = []
    if cw_el is not None and cw_el.find(_q("ConflictSets")) is not None:
        for c in cw_el.find(_q("ConflictSets")).iterchildren(_q("Conflict")):
            cname = (c.get("name") or "").strip()
            line = c.sourceline or 0
            if not cname:
                bad(
                    line,
                    Xserr.BAD_CONFLICTSET,
                    'a conflict set has an empty name; give every Conflict a name="..."',
                )
            ctypes = []
            for t in c.iterchildren(_q("Type")):
                tname = _text(t) or ""
                if not tname:
                    bad(
                        t.sourceline,
                        Xserr.BAD_CONFLICTSET,
                        f"conflict set {cname!r} has an empty Type",
                    )
                elif tname not in cw_set:
                    bad(
                        t.sourceline,
                        Xserr.BAD_CONFLICTSET,
                        f"conflict set {cname!r} uses type {tname!r}, which is not defined in "
                        "ChineseWallTypes; define it there or remove it from the set",
                    )
                elif tname in ctypes:
                    bad(
                        t.sourceline,
                        Xserr.BAD_CONFLICTSET,
                        f"conflict set {cname!r} lists type {tname!r} twice",
                    )
                else:
                    ctypes.append(tname)
            conflict_sets.append(ConflictSet(cname, tuple(ctypes), line))

    # -- labels --------------------------------------------------------------------------
    tmpl = root.find(_q("SecurityLabelTemplate"))
    subj = tmpl.find(_q("SubjectLabels"))
    obj = tmpl.find(_q("ObjectLabels"))
    vm_labels: list[VmLabel] = []
    res_labels: list[ResourceLabel] = []

    def check_label_name(name_el, kind) -> tuple[str, str | None]:
        lname = _text(name_el) or ""
        line = name_el.sourceline or 0
        p = label_name_problem(lname, f"{kind} label")
        if p:
            bad(line, *p)
        elif lname in (NULL_LABEL, INACCESSIBLE):
            bad(
                line,
                Xserr.BAD_LABEL,
                f"{lname} is a reserved name and cannot be defined as a {kind} label",
            )
        frm = name_el.get("from")
        if frm is not None:
            frm = frm.strip()
            p = label_name_problem(frm, f"the 'from' of {kind} label {lname!r}")
            if p:
                bad(line, *p)
        return lname, frm

    def check_types(kind, lname, types, allowed, component, line):
        seen = []
        for tname, tline in types:
            if tname not in allowed:
                where = "SimpleTypeEnforcementTypes" if component == "STE" else "ChineseWallTypes"
                bad(
                    tline or line,
                    Xserr.BAD_LABEL,
                    f"{kind} label {lname!r} uses {component} type {tname!r}, which is not "
                    f"defined in the policy's {where}; define it or fix the label",
                )
            elif tname in seen:
                bad(
                    tline or line,
                    Xserr.POLICY_HAS_DUPLICATES,
                    f"{kind} label {lname!r} lists {component} type {tname!r} twice",
                )
            else:
                seen.append(tname)
        return tuple(seen)

    bootstrap = ""
    if subj is not None:
        bootstrap = (subj.get("bootstrap") or "").strip()
        for v in subj.iterchildren(_q("VirtualMachineLabel")):
            name_el = v.find(_q("Name"))
            lname, frm = check_label_name(name_el, "VM")
            line = name_el.sourceline or 0
            ste = check_types(
                "VM", lname, _types(v, "SimpleTypeEnforcementTypes"), ste_set, "STE", line
            )
            cw = check_types("VM", lname, _types(v, "ChineseWallTypes"), cw_set, "CHWALL", line)
            vm_labels.append(VmLabel(lname, ste, cw, frm, line))
    if obj is not None:
        for r in obj.iterchildren(_q("ResourceLabel")):
            name_el = r.find(_q("Name"))
            lname, frm = check_label_name(name_el, "resource")
            line = name_el.sourceline or 0
            t_el = r.find(_q("SimpleTypeEnforcementTypes")).find(_q("Type"))
            tname = _text(t_el) or ""
            if not tname:
                bad(
                    t_el.sourceline or line,
                    Xserr.BAD_LABEL,
                    f"resource label {lname!r} needs exactly one STE type; its Type is empty",
                )
            else:
                check_types("resource", lname, [(tname, t_el.sourceline)], ste_set, "STE", line)
            res_labels.append(ResourceLabel(lname, tname, frm, line))

    for kind, labels in (("VM", vm_labels), ("resource", res_labels)):
        for lname, count in Counter(lbl.name for lbl in labels).items():
            if count > 1:
                line = [lbl.line for lbl in labels if lbl.name == lname][1]
                bad(
                    line,
                    Xserr.POLICY_HAS_DUPLICATES,
                    f"{kind} label {lname!r} is defined {count} times; define it once",
                )
        froms = Counter(lbl.from_name for lbl in labels if lbl.from_name)
        for frm, count in froms.items():
            if count > 1:
                line = [lbl.line for lbl in labels if lbl.from_name == frm][1]
                bad(
                    line,
                    Xserr.POLICY_HAS_DUPLICATES,
                    f"{count} {kind} labels are renamed from {frm!r}; only one label can "
                    "take over an old label",
                )

    # -- bootstrap -----------------------------------------------------------------------
    vm_names = {lbl.name for lbl in vm_labels}
    if subj is None:
        bad(
            tmpl.sourceline,
            Xserr.POLICY_INCONSISTENT,
            "the policy has no SubjectLabels, so it has no bootstrap label for Domain-0; add "
            '<SubjectLabels bootstrap="..."> with at least one VirtualMachineLabel',
        )
    elif bootstrap == UNLABELED:
        bad(
            subj.sourceline,
            Xserr.POLICY_INCONSISTENT,
            f"the bootstrap label cannot be {UNLABELED}: Domain-0 needs a real label",
        )
    elif bootstrap not in vm_names:
        bad(
            subj.sourceline,
            Xserr.POLICY_INCONSISTENT,
            f"bootstrap={bootstrap!r} is not one of the VM labels "
            f"({', '.join(sorted(vm_names)) or 'none'}); it must name Domain-0's VM label",
        )

    # -- Chinese Wall: a label may not hold two types of one conflict set ----------------
    for lbl in vm_labels:
        cw = set(lbl.chwall_types)
        for cs in conflict_sets:
            both = [t for t in cs.types if t in cw]
            if len(both) > 1:
                bad(
                    lbl.line,
                    Xserr.BAD_CONFLICTSET,
                    f"VM label {lbl.name!r} holds CHWALL types {', '.join(both)} that are in "
                    f"conflict with each other (conflict set {cs.name!r}); a label built from "
                    "mutually conflicting types is not allowed",
                )

    if problems:
        problems.sort(key=lambda p: p.line)
        raise PolicyFileError.from_problems(source, problems)
    return into(
        header=header,
        ste_types=tuple(ste_types),
        chwall_types=tuple(chwall_types),
        conflict_sets=tuple(conflict_sets),
        vm_labels=tuple(vm_labels),
        resource_labels=tuple(res_labels),
        bootstrap=bootstrap,
        has_ste=ste_el is not None,
        has_chwall=cw_el is not None,
        chwall_primary_attr=cw_el is not None and cw_el.get("priority") is not None,
        ste_primary_attr=ste_el is not None and ste_el.get("priority") is not None,
        xml=data,
        source=source,
    )
