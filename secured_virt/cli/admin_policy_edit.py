"""svirt-admin policy set-header | add-type | rm-type | add-conflict | rm-conflict | add-label |
rm-label: editing the loaded sHype/ACM policy from the command line (seed 000's XSMPolicy).

    svirt-admin policy set-header [--url U] [--reference R] [--date D] [--namespace-url N]
                                  [--version V]
    svirt-admin policy add-type ste|chwall TYPE        rm-type ste|chwall TYPE
    svirt-admin policy add-conflict NAME TYPE TYPE...  rm-conflict NAME
    svirt-admin policy add-label vm|res NAME --ste T[,T] [--chwall T[,T]]
    svirt-admin policy rm-label NAME [--type vm|res|any]
    ... --dry-run: what the edit changes, and whether the running domains allow it

Each edit is one all-or-nothing update of the loaded policy (its version goes up, FromPolicy
names the loaded one), refused with the same codes as ``policy update``.  The request is
``policy-edit`` (operation 43) on the host object: root runs it in-process, a delegated policy
manager through svirtd - the XML is never written by hand.
"""

from __future__ import annotations

import json
import sys

from secured_virt.requests import EXIT_FAILED, EXIT_OK, EXIT_USAGE

from .policy_diff import policy_diff, print_policy_diff

EDIT_ACTIONS = (
    "set-header",
    "add-type",
    "rm-type",
    "add-conflict",
    "rm-conflict",
    "add-label",
    "rm-label",
)


def edit_request(args) -> dict | str:
    """The request's arguments for an edit, or a usage message."""
    a, pos = args.action, [x for x in (args.file, args.file2, *(args.more or ())) if x]
    req: dict = {"edit": a, "dry_run": bool(args.dry_run)}
    if a == "set-header":
        for key, val in (
            ("policyurl", args.url),
            ("reference", args.reference),
            ("date", args.date),
            ("namespaceurl", args.namespace_url),
            ("version", args.version),
        ):
            if val is not None:
                req[key] = val
        if len(req) == 2 or pos:
            return "give --url, --reference, --date, --namespace-url and/or --version"
    elif a in ("add-type", "rm-type"):
        if len(pos) != 2:
            return f"{a} ste|chwall TYPE"
        req.update(component=pos[0], type=pos[1])
    elif a == "add-conflict":
        if len(pos) < 3:
            return "add-conflict NAME TYPE TYPE..."
        req.update(name=pos[0], types=pos[1:])
    elif a == "rm-conflict":
        if len(pos) != 1:
            return "rm-conflict NAME"
        req.update(name=pos[0])
    elif a == "add-label":
        if len(pos) != 2 or not args.ste:
            return "add-label vm|res NAME --ste T[,T] [--chwall T[,T]]"
        req.update(kind=pos[0], name=pos[1], ste=args.ste, chwall=args.chwall or "")
    elif a == "rm-label":
        if len(pos) != 1:
            return "rm-label NAME [--type vm|res|any]"
        req.update(name=pos[0], kind=args.type or "any")
    return req


def print_edit(args, data) -> int:
    """Print an edit's outcome (a dry run: the change as ``policy diff`` shows it)."""
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK if not data.get("dry_run") or data["would_load"] else EXIT_FAILED
    if not data.get("dry_run"):
        print(data.get("message", ""))
        return EXIT_OK
    import policy

    if data.get("new_xml"):
        old = policy.AcmPolicy.from_xml(data["old_xml"].encode(), source="loaded")
        new = policy.AcmPolicy.from_xml(data["new_xml"].encode(), source="edited")
        print_policy_diff(policy_diff(old, new), as_update=False)
    if data["would_load"]:
        print(f"{data['message']}: every running domain passes")
        return EXIT_OK
    print(f"policy {data['policy']} {data['version']} would be REFUSED:")
    for e in data["errors"]:
        print(f"  ({e['code']:#x}, {e['detail']:#x}) {e['message']}")
    return EXIT_FAILED


def usage(args, message: str) -> int:
    sys.stderr.write(f"svirt-admin policy {message}\n")
    return EXIT_USAGE


def register_options(sp) -> None:
    sp.add_argument("more", nargs="*", metavar="TYPE", help="add-conflict: more types")
    sp.add_argument("--url", help="set-header: the policy URL")
    sp.add_argument("--reference", help="set-header: the reference")
    sp.add_argument("--date", help="set-header: the date")
    sp.add_argument("--namespace-url", dest="namespace_url", help="set-header: the namespace URL")
    sp.add_argument("--version", help="set-header: a higher version (an edit raises the minor)")
    sp.add_argument("--ste", help="add-label: STE types, separated by ','")
    sp.add_argument("--chwall", help="add-label: Chinese Wall types, separated by ','")
