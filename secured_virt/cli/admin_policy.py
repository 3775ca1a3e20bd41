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
"""

from __future__ import annotations

import base64
import json
import os
import sys

from ..requests import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Reply, Request

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
)


def _dispatch(args, request: Request) -> Reply:
    """Root: in-process; anyone else: through svirtd (their rights come from UA/PA)."""
    from ..config import load_config

    config = load_config(args.config, caller_uid=os.getuid())
    if os.getuid() != 0:
        from .. import client

        if not client.daemon_available(config.socket):
            return Reply(
                EXIT_FAILED,
                message=f"svirtd is not running (no socket at "
                f"{config.socket}); policy managers go through svirtd",
            )
        return client.call(config.socket, request, password_cb=client.tty_password)
    from ..identity import identify_process
    from ..service import Service
    from .direct import TtyInteraction

    ident = identify_process(as_user=getattr(args, "as_user", None))
    return Service.from_config(config).handle(ident, request, TtyInteraction(ident.tty))


def _compile(args) -> int:
    import policy

    try:
        c = policy.compile_file(args.file)
    except policy.PolicyError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_FAILED
    if args.binary:
        with open(args.binary, "wb") as fh:
            fh.write(c.binary)
    if args.map:
        with open(args.map, "w") as fh:
            fh.write(c.map_text)
    if not args.quiet:
        sys.stdout.write(c.map_text)
        sys.stderr.write(
            f"{args.file}: policy {c.name} {c.version} compiled: "
            f"{len(c.binary)} bytes, {len(c.vm_order)} VM labels, "
            f"{len(c.res_order)} resource labels\n"
        )
    return EXIT_OK


def cmd_policy(args) -> int:
    if args.action == "compile":
        if not args.file:
            sys.stderr.write("svirt-admin policy compile: FILE is required\n")
            return EXIT_USAGE
        return _compile(args)
    req_args: dict = {}
    if args.action in ("load", "update"):
        if not args.file:
            sys.stderr.write(f"svirt-admin policy {args.action}: FILE is required\n")
            return EXIT_USAGE
        try:
            with open(args.file, encoding="utf-8") as fh:
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
        sys.stderr.write(f"error: {reply.message}\n")
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
        with open(args.output, "wb") as fh:
            fh.write(blob)
        print(f"{len(blob)} bytes written to {args.output}")
    elif a == "types":
        print("STE types:\n" + "".join(f"  {t}\n" for t in data["ste"]), end="")
        print("Chinese Wall types:\n" + "".join(f"  {t}\n" for t in data["chwall"]), end="")
    elif a == "conflicts":
        for cs in data["conflict_sets"]:
            print(f"{cs['name']}: {', '.join(cs['types'])}")
    elif a == "labels":
        print("\n".join(data["labels"]))
    elif a in ("load", "update") and data.get("dry_run"):
        if data["would_load"]:
            print(
                f"policy {data['policy']} {data['version']} can be loaded: every running "
                "domain passes"
            )
        else:
            print(f"policy {data['policy']} {data['version']} would be REFUSED:")
            for e in data["errors"]:
                print(f"  ({e['code']:#x}, {e['detail']:#x}) {e['message']}")
            return EXIT_FAILED
    else:
        print(data.get("message", ""))
    return EXIT_OK


def register(sub, add, files) -> None:
    sp = add(
        "policy",
        cmd_policy,
        "manage the sHype/ACM security policy",
        "svirt-admin policy update /etc/secured-virt/mypolicy-security_policy.xml --dry-run",
    )
    sp.add_argument("action", choices=ACTIONS)
    sp.add_argument("file", nargs="?", metavar="FILE", help="policy XML (load, update, compile)")
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
