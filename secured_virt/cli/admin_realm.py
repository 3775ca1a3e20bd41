"""svirt-admin realm ACTION: management realms (secured_virt.tenancy), through svirtd.

    svirt-admin realm list                                   the realms you belong to (root: all)
    svirt-admin realm show REALM [--json]                    members, storage, labels, VMs, roles
    svirt-admin realm create REALM [--pool P --path DIR]     root only
    svirt-admin realm rm REALM                               root only; refused while it has VMs
    svirt-admin realm add-member|rm-member REALM (--user U | --group G)
    svirt-admin realm grant REALM ROLE OP[,OP...] VM...      a realm role may OP on the realm's VMs
    svirt-admin realm revoke REALM ROLE [OP[,OP...] [VM...]] (no OP and no VM: the whole role)
    svirt-admin realm assign|deassign REALM (--user U | --group G) ROLE
    svirt-admin realm setup REALM                            root only; the realm's QEMU user
    svirt-admin realm move VM REALM                          root only; VM shut off

Why through svirtd: a realm admin is not root and must not need sudo; svirtd identifies them
from the kernel (SO_PEERCRED), checks the change against the realm (ARBAC97 with the realm as
the range: anything naming a user, group, role or VM outside it is refused, exit 3, and
audited), writes the realm's own file and reloads.  Root's requests also go to a running
svirtd, so the daemon enforces what was just written; without one, root's run in-process.
Changes print their impact (who gains or loses what); ``--dry-run`` prints it and changes
nothing.
"""

from __future__ import annotations

import json
import os
import sys

from secured_virt.requests import EXIT_BAD_POLICY, EXIT_FAILED, EXIT_OK, Reply, Request

ACTIONS = (
    "list",
    "show",
    "create",
    "rm",
    "add-member",
    "rm-member",
    "grant",
    "revoke",
    "assign",
    "deassign",
    "setup",
    "move",
)


def _dispatch(args, request: Request) -> Reply:
    from secured_virt import client
    from secured_virt.access.identity import invoking_uid
    from secured_virt.config import ConfigError, load_config

    sock = getattr(args, "socket", None)
    if sock:  # like svirsh --socket: naming a socket grants nothing, svirtd decides
        try:
            return client.call(sock, request, password_cb=client.tty_password)
        except client.ClientError as exc:
            return Reply(EXIT_FAILED, message=f"svirtd at {sock} did not complete it: {exc}")
    try:
        config = load_config(args.config, caller_uid=invoking_uid())
    except ConfigError as exc:
        return Reply(EXIT_BAD_POLICY, message=str(exc))
    if client.daemon_available(config.socket):
        try:
            return client.call(config.socket, request, password_cb=client.tty_password)
        except client.ClientError as exc:
            if os.getuid() != 0 or exc.code != "unavailable":
                return Reply(EXIT_FAILED, message=f"svirtd did not complete the request: {exc}")
    if os.getuid() != 0:
        return Reply(
            EXIT_FAILED,
            message=f"svirtd is not running (no socket at {config.socket}); realm admins go "
            "through svirtd",
        )
    from secured_virt.access.identity import identify_process
    from secured_virt.service import Service

    ident = identify_process()
    return Service.from_config(config).handle(ident, request)


def cmd_realm(args) -> int:
    a: dict = {"action": args.action}
    rest = list(args.words)
    if args.action == "move":  # svirt-admin realm move VM REALM
        if len(rest) != 2:
            sys.stderr.write("svirt-admin realm move: give the VM, then the REALM\n")
            return 2
        a["vm"] = rest.pop(0)
    if args.action != "list":
        if not rest:
            sys.stderr.write(f"svirt-admin realm {args.action}: a REALM name is required\n")
            return 2
        a["realm"] = rest.pop(0)
    if args.user:
        a["user"] = args.user
    if args.group:
        a["group"] = args.group
    if args.pool:
        a["pool"] = args.pool
    if args.path:
        a["path"] = args.path
    if args.dry_run:
        a["dry_run"] = True
    if args.action in ("grant", "revoke"):
        if not rest:
            sys.stderr.write(f"svirt-admin realm {args.action}: a ROLE is required\n")
            return 2
        a["role"] = rest.pop(0)
        if rest:
            a["operations"] = [o for o in rest.pop(0).split(",") if o]
        a["vms"] = rest
        rest = []
    elif args.action in ("assign", "deassign"):
        if len(rest) != 1:
            sys.stderr.write(f"svirt-admin realm {args.action}: give exactly one ROLE\n")
            return 2
        a["role"] = rest.pop(0)
    if rest:
        sys.stderr.write(f"svirt-admin realm {args.action}: unexpected {' '.join(rest)}\n")
        return 2
    reply = _dispatch(args, Request("realm", a))
    if not reply.ok:
        sys.stderr.write(f"svirt-admin: {reply.message}\n")
        return reply.status
    data = reply.data or {}
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return EXIT_OK
    if "realms" in data:
        if not data.get("configured"):
            print("No realms are configured: one root realm (root's UA/PA) as before.")
        for r in data["realms"]:
            admin = " (admin)" if r.get("admin") else ""
            print(f"{r['name']}{admin}\tpool {r.get('pool') or '-'}\t{r.get('path') or '-'}")
    elif "realm" in data:
        _show(data["realm"])
    elif "review" in data:
        _review(data["review"])
    else:
        if data.get("impact"):
            sys.stdout.write(data["impact"])
        print(data.get("message", "done"))
    return EXIT_OK


def _show(r: dict) -> None:
    print(f"Realm:      {r['name']}")
    m, ad = r["members"], r["admins"]
    print(
        f"Members:    users {', '.join(m['users']) or '-'}; groups {', '.join(m['groups']) or '-'}"
    )
    users, groups = ", ".join(ad["users"]) or "-", ", ".join(ad["groups"]) or "-"
    print(f"Admins:     users {users}; groups {groups}")
    st = r["storage"]
    print(f"Storage:    pool {st['pool'] or '-'} at {st['path'] or '-'}")
    print(f"Labels:     {', '.join(r['labels']) or '-'}")
    print(f"Operations: {', '.join(r['operations']) or 'every VM operation'}")
    print(f"VMs:        {', '.join(r['vms_now']) or '-'}")
    sv = r.get("svirt") or {}
    if sv.get("user"):
        cat = f"; category c{sv['category']}" if sv.get("category") is not None else ""
        print(f"QEMU runs as: {sv['user']} (uid {sv['uid']}, gid {sv['gid']}){cat}")
    else:
        print(f"QEMU runs as: libvirt's default user (run: svirt-admin realm setup {r['name']})")
    f = r.get("file") or {}
    fm = f.get("members") or {}
    if fm.get("users") or fm.get("groups"):
        added = ", ".join([*fm.get("users", ()), *(f"group {g}" for g in fm.get("groups", ()))])
        print(f"Added by the realm's admins: {added}")
    for role, g in sorted((f.get("roles") or {}).items()):
        print(f"Role {role}: {', '.join(g['operations']) or '-'} on {', '.join(g['vms']) or '-'}")
    for kind, who, role in f.get("assignments") or ():
        print(f"  {kind} {who} -> {role}")
    if f.get("error"):
        print(f"Problem with the realm's file: {f['error']}")


def _review(r: dict) -> None:
    print(f"realm {r['realm']}")
    print("  members and their roles:")
    for who, roles in sorted(r["members"].items()):
        print(f"    {who:<20} {', '.join(roles) or '-'}")
    if r.get("groups"):
        print(f"  member groups: {', '.join(r['groups'])}")
    for vm, g in sorted(r["vms"].items()):
        print(f"  vm {vm}")
        if not g["operations"]:
            print("    no realm member may do anything on it (root may)")
        for op, users in sorted(g["operations"].items()):
            print(f"    {op:<20} {', '.join(users)}")
        for op, users in sorted(g["refused_by_realm"].items()):
            print(f"    {op:<20} {', '.join(users)}  (granted, but outside the realm: refused)")


def cmd_realm_review(args) -> int:
    """``svirt-admin review --realm R`` (svirt-admin's review entry point hands it here)."""
    reply = _dispatch(args, Request("realm", {"action": "review", "realm": args.realm}))
    if not reply.ok:
        sys.stderr.write(f"svirt-admin: {reply.message}\n")
        return reply.status
    if args.json:
        print(json.dumps(reply.data, indent=2, sort_keys=True))
    else:
        _review(reply.data["review"])
    return EXIT_OK


def register(sub, add, files) -> None:
    sp = add(
        "realm",
        cmd_realm,
        "manage realms (tenants): members, realm roles, grants, assignments, through svirtd",
        "svirt-admin realm list\n"
        "svirt-admin realm add-member acme --user bob\n"
        "svirt-admin realm grant acme ops start,shutdown acme-web\n"
        "svirt-admin realm assign acme --user bob ops\n"
        "svirt-admin realm move acme-old globex",
        exits=(
            (EXIT_OK, "done"),
            (
                1,
                "failed (no svirtd, no such realm, a realm that still has VMs, a VM to move "
                "that runs)",
            ),
            (2, "usage error"),
            (
                3,
                "denied: you are not the realm's admin, or the change names a user, group, "
                "role or VM outside the realm; create, rm, setup and move are root's (audited)",
            ),
            (4, "the realms file or the result does not load"),
        ),
    )
    sp.add_argument("action", choices=ACTIONS)
    sp.add_argument(
        "words", nargs="*", metavar="ARG", help="REALM, then ROLE, OPS, VMs (move: VM REALM)"
    )
    sp.add_argument("--user", help="a user (add-member, rm-member, assign, deassign)")
    sp.add_argument("--group", help="a Unix group, resolved through NSS")
    sp.add_argument("--pool", help="create: the realm's libvirt storage pool name")
    sp.add_argument("--path", help="create: the pool's directory")
    sp.add_argument("--dry-run", action="store_true", help="show the impact, change nothing")
    sp.add_argument("--socket", help="svirtd's socket (default: the configuration's)")
    sp.add_argument("--json", action="store_true", help="print as JSON")
