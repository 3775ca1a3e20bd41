"""What changes between two sHype policies, as data and as the lines ``svirt-admin policy diff``
and an edit's ``--dry-run`` print: one module both use, so the two always show a change alike.
"""

from __future__ import annotations


def policy_diff(old, new) -> dict:
    """What changes between two sHype policies: header, types, conflict sets, labels (with
    Xen's from= renames), and each label's ssidref before and after."""
    co, cn = old.compile(), new.compile()

    def names(labels):
        return {lab.name for lab in labels}

    renames = {
        lab.from_name: lab.name
        for lab in (*new.vm_labels, *new.resource_labels)
        if getattr(lab, "from_name", None)
    }
    out = {
        "old": {"policy": old.name, "version": old.version},
        "new": {
            "policy": new.name,
            "version": new.version,
            "from": (new.header.from_policy.name, new.header.from_policy.version)
            if new.header.from_policy
            else None,
        },
        "ste_types": {
            "added": sorted(set(new.ste_types) - set(old.ste_types)),
            "removed": sorted(set(old.ste_types) - set(new.ste_types)),
        },
        "chwall_types": {
            "added": sorted(set(new.chwall_types) - set(old.chwall_types)),
            "removed": sorted(set(old.chwall_types) - set(new.chwall_types)),
        },
        "conflict_sets": {
            "old": {c.name: sorted(c.types) for c in old.conflict_sets},
            "new": {c.name: sorted(c.types) for c in new.conflict_sets},
        },
        "renamed": renames,
    }
    for kind, o, n in (
        ("vm_labels", old.vm_labels, new.vm_labels),
        ("resource_labels", old.resource_labels, new.resource_labels),
    ):
        gone = names(o) - names(n) - set(renames)
        out[kind] = {
            "added": sorted(names(n) - names(o) - set(renames.values())),
            "removed": sorted(gone),
        }
    out["ssidrefs"] = {
        lab: [co.ssidref(lab), cn.ssidref(renames.get(lab, lab))]
        for lab in co.vm_order
        if renames.get(lab, lab) in cn.vm and co.ssidref(lab) != cn.ssidref(renames.get(lab, lab))
    }
    return out


def print_policy_diff(d: dict, *, as_update: bool = True) -> None:
    """Print ``policy_diff``'s result: the two versions, types and labels added or removed,
    renames, changed conflict sets and ssidrefs.  ``as_update``: also name the policy the new
    one says it updates and the labels it renames (``policy diff`` of an update file; an
    edit's preview shows the edit alone)."""
    o, n = d["old"], d["new"]
    print(
        f"--- {o['policy']} {o['version']}\n+++ {n['policy']} {n['version']}"
        + (f" (from {n['from'][0]} {n['from'][1]})" if as_update and n["from"] else "")
    )
    for key, title in (
        ("ste_types", "STE types"),
        ("chwall_types", "Chinese Wall types"),
        ("vm_labels", "VM labels"),
        ("resource_labels", "resource labels"),
    ):
        for name in d[key]["added"]:
            print(f"+ {title}: {name}")
        for name in d[key]["removed"]:
            print(f"- {title}: {name}")
    for a, b in sorted(d["renamed"].items()) if as_update else ():
        print(f"~ label renamed: {a} -> {b}")
    cso, csn = d["conflict_sets"]["old"], d["conflict_sets"]["new"]
    for name in sorted(set(cso) | set(csn)):
        if cso.get(name) != csn.get(name):
            print(
                f"~ conflict set {name}: {', '.join(cso.get(name, [])) or '(none)'} -> "
                f"{', '.join(csn.get(name, [])) or '(none)'}"
            )
    for lab, (a, b) in sorted(d["ssidrefs"].items()):
        print(f"~ ssidref of {lab}: {a:#010x} -> {b:#010x}")
