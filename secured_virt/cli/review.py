"""svirt-admin review: the NIST RBAC review functions, printed for people (or as JSON)."""

from __future__ import annotations

import json

from secured_virt.access.operations import CATALOGUE
from secured_virt.requests import EXIT_OK, EXIT_USAGE


def _opname(op_id: int) -> str:
    op = CATALOGUE.by_id.get(op_id)
    return f"{op_id} {op.name}" if op else str(op_id)


def _perm_rows(perms) -> list[dict]:
    """One row per (operation, role), the objects it reaches joined: easier to read."""
    rows: dict[tuple, dict] = {}
    for p in perms:
        key = (p.operation, getattr(p, "role", None))
        row = rows.setdefault(
            key,
            {
                "operation": p.operation,
                "name": CATALOGUE.names.get(p.operation),
                "objects": [],
                "role": key[1],
            },
        )
        text = str(p.selector)
        if getattr(p, "values", None) is not None:  # the labels a setlabel grant may give
            text += f" (labels: {p.values.describe()})"
        if text not in row["objects"]:
            row["objects"].append(text)
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    return [dict(r, objects=", ".join(r["objects"])) for _k, r in ordered]


def review(pol, args) -> int:
    attrs = {}
    if args.owner:
        attrs["owner"] = args.owner
    if args.label:
        attrs["label"] = args.label
    if args.kind == "user":
        if args.name not in pol.users:
            print(f"user '{args.name}' is not in the UA file (no roles, no permissions)")
            return EXIT_USAGE
        data = {
            "user": args.name,
            "assigned_roles": sorted(pol.assigned_roles(args.name)),
            "authorized_roles": sorted(pol.authorized_roles(args.name)),
            "permissions": _perm_rows(pol.user_permissions(args.name)),
        }
    elif args.kind == "role":
        if args.name not in pol.roles:
            print(f"role '{args.name}' is not defined in the PA file")
            return EXIT_USAGE
        data = {
            "role": args.name,
            "assigned_users": sorted(pol.assigned_users(args.name)),
            "authorized_users": sorted(pol.authorized_users(args.name)),
            "permissions": _perm_rows(pol.role_permissions(args.name)),
        }
    else:
        who = {}
        for op in CATALOGUE:
            users = sorted(pol.authorized_users_for(op.id, args.name, attrs))
            if users:
                who[op.name] = users
        data = {"vm": args.name, "attrs": attrs, "operations": who}
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    if args.kind == "user":
        print(f"user {args.name}")
        print(f"  assigned roles:   {', '.join(data['assigned_roles']) or '-'}")
        print(f"  authorized roles: {', '.join(data['authorized_roles']) or '-'}")
        print("  may perform:")
        for r in data["permissions"]:
            print(
                f"    {r['operation']:>3} {r['name']:<20} on {r['objects']}"
                + (f"  (role {r['role']})" if r["role"] else "")
            )
    elif args.kind == "role":
        print(f"role {args.name}")
        print(f"  assigned users:   {', '.join(data['assigned_users']) or '-'}")
        print(f"  authorized users: {', '.join(data['authorized_users']) or '-'}")
        print("  permissions:")
        for r in data["permissions"]:
            print(f"    {r['operation']:>3} {r['name']:<20} on {r['objects']}")
    else:
        print(f"vm {args.name}" + (f" {attrs}" if attrs else ""))
        if not data["operations"]:
            print("  nobody but root may do anything on it")
        for opname, users in data["operations"].items():
            print(f"  {opname:<20} {', '.join(users)}")
    return EXIT_OK
