"""A policy -> XML, in Xen's format.

Why: policies edited through the XSM API (addType, addLabel, setHeader ...) and generated ones
(tests, benchmarks, DEFAULT with a ``from`` rename) are written out in the same format an
administrator would write, then read back through the validating reader.
"""

from __future__ import annotations

from lxml import etree

from .constants import POLICY_NS, ROOT_TAG
from .parts import PolicyContent

_NS = "{" + POLICY_NS + "}"


def _el(parent, tag, text=None, **attrib):
    e = etree.SubElement(parent, _NS + tag, {k: v for k, v in attrib.items() if v is not None})
    if text is not None:
        e.text = text
    return e


def _type_list(parent, tag, types, *, allow_empty=False):
    lst = _el(parent, tag)
    if types:
        for t in types:
            _el(lst, "Type", t)
    elif allow_empty:
        _el(lst, "Type")  # Xen's way of saying "no type" (see DEFAULT's ChineseWallTypes)
    return lst


def write_policy(p: PolicyContent) -> bytes:
    root = etree.Element(_NS + ROOT_TAG, nsmap={None: POLICY_NS})
    h = p.header
    hdr = _el(root, "PolicyHeader")
    _el(hdr, "PolicyName", h.name)
    for tag, val in (
        ("PolicyUrl", h.url),
        ("Reference", h.reference),
        ("Date", h.date),
        ("NameSpaceUrl", h.namespace_url),
    ):
        if val is not None:
            _el(hdr, tag, val)
    _el(hdr, "Version", h.version)
    if h.from_policy is not None:
        fp = _el(hdr, "FromPolicy")
        _el(fp, "PolicyName", h.from_policy.name)
        _el(fp, "Version", h.from_policy.version)

    if p.has_ste or p.ste_types:
        ste = _el(
            root,
            "SimpleTypeEnforcement",
            priority="PrimaryPolicyComponent" if p.ste_primary_attr else None,
        )
        _type_list(ste, "SimpleTypeEnforcementTypes", p.ste_types)
    if p.has_chwall or p.chwall_types:
        cw = _el(
            root,
            "ChineseWall",
            priority="PrimaryPolicyComponent" if p.chwall_primary_attr else None,
        )
        _type_list(cw, "ChineseWallTypes", p.chwall_types)
        if p.conflict_sets:
            sets = _el(cw, "ConflictSets")
            for cs in p.conflict_sets:
                c = _el(sets, "Conflict", name=cs.name)
                for t in cs.types:
                    _el(c, "Type", t)

    tmpl = _el(root, "SecurityLabelTemplate")
    if p.vm_labels or p.bootstrap:
        subj = _el(tmpl, "SubjectLabels", bootstrap=p.bootstrap)
        for lbl in p.vm_labels:
            v = _el(subj, "VirtualMachineLabel")
            _el(v, "Name", lbl.name, **{"from": lbl.from_name})
            if lbl.ste_types:
                _type_list(v, "SimpleTypeEnforcementTypes", lbl.ste_types)
            if p.has_chwall or p.chwall_types:
                _type_list(v, "ChineseWallTypes", lbl.chwall_types, allow_empty=True)
    if p.resource_labels:
        obj = _el(tmpl, "ObjectLabels")
        for lbl in p.resource_labels:
            r = _el(obj, "ResourceLabel")
            _el(r, "Name", lbl.name, **{"from": lbl.from_name})
            _type_list(r, "SimpleTypeEnforcementTypes", (lbl.ste_type,))
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"
