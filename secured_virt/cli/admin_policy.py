"""svirt-admin policy ... : sHype/ACM policy management (Xen's xm setpolicy/getpolicy/...).

    svirt-admin policy show [--xml]           the loaded policy, boot flag, installed policies
    svirt-admin policy map | types | conflicts | labels [--type vm|res|any]
    svirt-admin policy binary --output FILE   the loaded binary policy (Xen's layout)
    svirt-admin policy load FILE [--boot] [--overwrite] [--dry-run]
    svirt-admin policy update FILE [--boot] [--dry-run]    all-or-nothing over running domains
    svirt-admin policy reset | rm-boot
    svirt-admin policy compile FILE [--binary OUT] [--map OUT]   offline: loads nothing

Everything but ``compile`` is checked against the caller's roles on the host object (root
always; a delegated policy manager through svirtd) and audited.

A change (load, update, reset, rm-boot) goes *through* svirtd whenever one is running, for
root and under sudo too: svirtd applies it to the policy it enforces, under its host-wide ACM
lock, and answers only then.  Done in this process instead, the change reached svirtd only
when its file watcher next looked (about 1-3 s in which svirtd still enforced the old policy,
while this command had already said "loaded").  Without a running svirtd there is nothing to
wait for: it loads the state from disk when it starts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys

from secured_virt.requests import EXIT_BAD_POLICY, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Reply, Request

from .admin_policy_edit import EDIT_ACTIONS
from .policy_diff import policy_diff, print_policy_diff

ACTIONS = (
    "show",
    "map",
    "binary",
    "types",
    "conflicts",
    "labels",
    "load",
    "update",
    "reset",
    "rm-boot",
    "compile",
    "diff",
    *EDIT_ACTIONS,  # editing the loaded policy: admin_policy_edit
)


def caller_uid() -> int:
    """Who chose the options: under sudo the invoking user, not the root this process runs as."""
    from secured_virt.access.identity import identify_process

    return identify_process().uid


@contextlib.contextmanager
def as_caller():
    """Open the files named on the command line with the caller's own rights.

    Under sudo this process is root but the caller is not (like sudoedit): without this,
    ``sudo svirt-admin policy compile X --map /etc/...`` would write, and ``policy load
    /etc/shadow`` read (and quote in its parse error), any file as root."""
    uid = caller_uid()
    if uid == 0 or os.geteuid() != 0:
        yield
        return
    import importlib
    import pwd

    # Import, as root, what parsing and compiling will need: once the effective uid is the
    # caller's, Python cannot read modules installed where only root may (a 0700 tree).
    for mod in (
        "policy.reader",
        "policy.xmlsafe",
        "policy.compiler",
        "policy.writer",
        "policy.mapfile",
        "policy.binfmt",
        "policy.errors",
        "policy.safefile",
        "secured_virt.access.audit",
    ):
        importlib.import_module(mod)
    from policy import xmlsafe

    with xmlsafe._schema_lock:  # the XSD, too, is package data only root may read here
        xmlsafe._load_schema()
    pw = pwd.getpwuid(uid)
    egid, groups = os.getegid(), os.getgroups()
    os.setgroups(os.getgrouplist(pw.pw_name, pw.pw_gid))
    os.setegid(pw.pw_gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(egid)
        os.setgroups(groups)


def _write_out(path: str, data: bytes) -> bool:
    try:
        with as_caller(), open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        sys.stderr.write(f"svirt-admin: cannot write {path}: {exc.strerror}\n")
        return False
    return True


#: the requests that change what svirtd enforces: they go through a running svirtd
CHANGES = frozenset(
    {"policy-load", "policy-update", "policy-reset", "policy-rm-boot", "policy-edit"}
)


def _through_running_daemon(socket_path: str, request: Request) -> Reply | None:
    """The reply of a running svirtd to ``request``, or None when no svirtd is running.

    Under sudo the client connects with the invoker's credentials (secured_virt.client), so
    svirtd checks and audits the real caller.  A daemon that is there but fails mid-request is
    an error, never a reason to do the change a second time in this process."""
    from secured_virt import client

    if not client.daemon_available(socket_path):
        return None
    try:
        return client.call(socket_path, request, password_cb=client.tty_password)
    except client.ClientError as exc:
        if exc.code == "unavailable":  # a stale socket: no daemon behind it
            return None
        return Reply(
            exc.status,
            message=f"svirtd at {socket_path} did not complete the request ({exc}); "
            "check the result with: svirt-admin policy show",
        )


def _dispatch(args, request: Request) -> Reply:
    """Root: in-process, but changes through a running svirtd; anyone else: through svirtd
    (their rights come from UA/PA)."""
    from secured_virt.config import ConfigError, load_config

    try:
        config = load_config(args.config, caller_uid=caller_uid())
    except ConfigError as exc:
        return Reply(EXIT_BAD_POLICY, message=str(exc))
    if os.getuid() == 0 and request.command in CHANGES:
        as_user = getattr(args, "as_user", None)
        routed = Request(request.command, request.args, as_user) if as_user else request
        reply = _through_running_daemon(config.socket, routed)
        if reply is not None:
            return reply
    if os.getuid() != 0:
        from secured_virt import client

        if not client.daemon_available(config.socket):
            return Reply(
                EXIT_FAILED,
                message=f"svirtd is not running (no socket at "
                f"{config.socket}); policy managers go through svirtd",
            )
        return client.call(config.socket, request, password_cb=client.tty_password)
    from secured_virt.access.identity import identify_process
    from secured_virt.service import Service

    from .direct import TtyInteraction

    ident = identify_process(as_user=getattr(args, "as_user", None))
    return Service.from_config(config).handle(ident, request, TtyInteraction(ident.tty))


def _compile(args) -> int:
    import policy

    try:
        with as_caller():
            c = policy.compile_file(args.file)
    except policy.PolicyError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_FAILED
    if args.binary and not _write_out(args.binary, c.binary):
        return EXIT_FAILED
    if args.map and not _write_out(args.map, c.map_text.encode()):
        return EXIT_FAILED
    if not args.quiet:
        sys.stdout.write(c.map_text)
        sys.stderr.write(
            f"{args.file}: policy {c.name} {c.version} compiled: "
            f"{len(c.binary)} bytes, {len(c.vm_order)} VM labels, "
            f"{len(c.res_order)} resource labels\n"
        )
    return EXIT_OK


def _diff(args) -> int:
    import policy

    if not (args.file and args.file2):
        sys.stderr.write("svirt-admin policy diff: give OLD and NEW policy files\n")
        return EXIT_USAGE
    try:
        with as_caller():
            old = policy.AcmPolicy.from_file(args.file)
            new = policy.AcmPolicy.from_file(args.file2)
    except policy.PolicyError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_FAILED
    d = policy_diff(old, new)
    if args.json:
        print(json.dumps(d, indent=2))
        return EXIT_OK
    print_policy_diff(d)
    print(
        "(to see which running VMs would refuse it here: svirt-admin policy update NEW --dry-run)"
    )
    return EXIT_OK


def cmd_policy(args) -> int:
    if args.action == "diff":
        return _diff(args)
    if args.action == "compile":
        if not args.file:
            sys.stderr.write("svirt-admin policy compile: FILE is required\n")
            return EXIT_USAGE
        return _compile(args)
    req_args: dict = {}
    if args.action in EDIT_ACTIONS:
        from . import admin_policy_edit as pe

        req = pe.edit_request(args)
        if isinstance(req, str):
            return pe.usage(args, req)
        reply = _dispatch(args, Request("policy-edit", req))
        if not reply.ok:
            sys.stderr.write(f"svirt-admin: {reply.message}\n")
            return reply.status
        return pe.print_edit(args, reply.data)
    if args.action in ("load", "update"):
        if not args.file:
            sys.stderr.write(f"svirt-admin policy {args.action}: FILE is required\n")
            return EXIT_USAGE
        try:
            with as_caller(), open(args.file, encoding="utf-8") as fh:
                req_args["xml"] = fh.read(16 * 1024 * 1024)
        except OSError as exc:
            sys.stderr.write(f"svirt-admin: cannot read {args.file}: {exc.strerror}\n")
            return EXIT_FAILED
        req_args.update(
            file=os.path.basename(args.file),
            boot=args.boot,
            overwrite=args.overwrite,
            dry_run=args.dry_run,
        )
    if args.action == "labels":
        req_args["type"] = args.type or "vm"
    if args.action == "show":
        req_args["xml"] = args.xml
    reply = _dispatch(args, Request("policy-" + args.action, req_args))
    if not reply.ok:
        sys.stderr.write(f"svirt-admin: {reply.message}\n")
        return reply.status
    return _print(args, reply.data)


def _print(args, data) -> int:
    if args.json and args.action != "binary":
        print(json.dumps(data, indent=2))
        return EXIT_OK
    a = args.action
    if a == "show":
        print("Supported security subsystems   : ACM")
        print(f"Policy name                     : {data['policy']}")
        print("Policy type                     : ACM")
        print(f"Version of XML policy           : {data['version']}")
        state = ["loaded"] + (["activated for boot"] if data["boot"] else [])
        print(f"Policy configuration            : {', '.join(state)}")
        print(
            "Installed policies              : "
            + ", ".join(f"{p['name']} {p.get('version', '?')}" for p in data["installed"])
        )
        for w in data.get("warnings") or ():
            print(f"warning: {w}")
        if data.get("xml"):
            print(data["xml"])
    elif a == "map":
        sys.stdout.write(data["map"])
    elif a == "binary":
        blob = base64.b64decode(data["binary_b64"])
        if not args.output:
            sys.stderr.write("svirt-admin policy binary: give --output FILE\n")
            return EXIT_USAGE
        if not _write_out(args.output, blob):
            return EXIT_FAILED
        print(f"{len(blob)} bytes written to {args.output}")
    elif a == "types":
        print("STE types:\n" + "".join(f"  {t}\n" for t in data["ste"]), end="")
        print("Chinese Wall types:\n" + "".join(f"  {t}\n" for t in data["chwall"]), end="")
    elif a == "conflicts":
        for cs in data["conflict_sets"]:
            print(f"{cs['name']}: {', '.join(cs['types'])}")
    elif a == "labels":
        _print_labels(data)
    elif a in ("load", "update") and data.get("dry_run"):
        if data["would_load"]:
            print(
                f"policy {data['policy']} {data['version']} can be loaded: every running "
                "domain passes"
            )
        else:
            print(f"policy {data['policy']} {data['version']} would be REFUSED:")
            for e in data["errors"]:  # the words only: Xen's (code, detail) pair is in --json
                print(f"  {e['message']}")
            if data.get("hint"):
                print(data["hint"])
            return EXIT_FAILED
    else:
        print(data.get("message", ""))
    return EXIT_OK


def _print_labels(data) -> None:
    """Each label with its kind and its STE / Chinese Wall types (seed 000's policylabel
    records); the names alone are ``svirsh labels``."""
    records = data.get("records")
    if records is None:  # an older svirtd: names only
        print("\n".join(data["labels"]))
        return
    rows = [
        (
            r["name"],
            "VM" if r["type"] == "vm" else "resource",
            ", ".join(r["stetypes"]) or "-",
            ", ".join(r["chwalltypes"]) or "-",
        )
        for r in sorted(records, key=lambda r: (r["type"] != "vm", r["name"]))
    ]
    head = ("Label", "Kind", "STE types", "Chinese Wall types")
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(3)]
    for row in (head, *rows):
        cells = [c.ljust(w) for c, w in zip(row[:3], widths, strict=True)]
        print("  ".join([*cells, row[3]]))


def register(sub, add, files) -> None:
    sp = add(
        "policy",
        cmd_policy,
        "manage the sHype/ACM security policy",
        "svirt-admin policy update /etc/secured-virt/mypolicy-security_policy.xml --dry-run",
    )
    sp.add_argument("action", choices=ACTIONS)
    sp.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="policy XML (load, update, compile; diff: the old one)",
    )
    sp.add_argument("file2", nargs="?", metavar="NEW", help="diff: the new policy XML")
    sp.add_argument("--boot", action="store_true", help="also load this policy at boot")
    sp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an installed, not loaded policy of the same name",
    )
    sp.add_argument(
        "--dry-run",
        action="store_true",
        help="only say whether the running domains allow it, and why not",
    )
    sp.add_argument("--type", help="labels: vm (default), res or any")
    sp.add_argument("--xml", action="store_true", help="show: also print the policy XML")
    sp.add_argument("--output", metavar="FILE", help="binary: where to write it")
    sp.add_argument("--binary", metavar="OUT", help="compile: write the binary policy here")
    sp.add_argument("--map", metavar="OUT", help="compile: write the map here")
    sp.add_argument("-q", "--quiet", action="store_true", help="compile: print nothing")
    sp.add_argument("--json", action="store_true", help="print as JSON")
    from .admin_policy_edit import register_options

    register_options(sp)
