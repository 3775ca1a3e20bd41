"""svirt-admin — root's (and delegated admins') tool for the role and security policies.

Subcommands (each has --help with an example):

  operations [--json]                 the operation catalogue (ids for the PA file)
  check USER OP [VM] [--explain]      would USER be allowed OP on VM?  exit 0 yes, 3 no
                                      (host operations: on the host object, no VM needed)
  validate [--ua F] [--pa F]          check UA/PA files without using them; exit 0 valid, 4 not
  review user U | role R | vm V       NIST review functions: who may do what, where

Exit codes: 0 ok/allowed, 1 invalid or failed, 2 usage, 3 denied, 4 bad policy or configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap

from secured_virt.access.operations import CATALOGUE, HOST
from secured_virt.config import ConfigError
from secured_virt.hardening import bytecode_readable_like_source
from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)

    def _check_value(self, action, value):
        # hidden subcommands (``_complete-names``, for bash completion) are not offered
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            shown = ", ".join(repr(n) for n in action.choices if not n.startswith("_"))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {shown})")
        super()._check_value(action, value)


def _config(args):
    """The configuration (read once per run).  A ConfigError is left to main(), which names
    the file and line and exits 4, whatever the subcommand.  With only one of --ua/--pa given
    the message adds that the other file was to come from the configuration."""
    cfg = getattr(args, "_config", None)
    if cfg is None:
        from secured_virt.config import load_config

        from .admin_policy import caller_uid

        try:
            cfg = load_config(args.config, caller_uid=caller_uid())  # under sudo: the invoker
        except ConfigError as exc:
            ua, pa = getattr(args, "ua", None), getattr(args, "pa", None)
            if (ua is None) == (pa is None):
                raise
            kind, flag = ("PA", "--pa") if pa is None else ("UA", "--ua")
            raise ConfigError(
                f"{exc} (the configuration names the {kind} file, as {flag} was not given)"
            ) from None
        args._config = cfg
    return cfg


def require(args, op_name: str) -> int | None:
    """Delegated use (sudo, or a plain user): the caller must hold ``op_name`` on the host
    object, and the decision is audited like any other.  None = go on; else the exit code.

    Root itself is always allowed.  Without this, ``sudo svirt-admin audit show`` would let any
    sudo user read root's 0600 audit log, and ``check``/``review`` would answer anyone."""
    import rbac
    from secured_virt.access.gate import Gate, Target
    from secured_virt.access.identity import IdentityError, identify_process
    from secured_virt.access.operations import CATALOGUE

    try:
        ident = identify_process()
    except IdentityError as exc:
        sys.stderr.write(f"svirt-admin: {exc}\n")
        return EXIT_DENIED
    if ident.uid == 0:
        return None
    cfg = _config(args)
    op = CATALOGUE.get(op_name)
    try:
        from secured_virt.access.audit import AuditLog
        from secured_virt.access.rolesession import ActiveRoles
        from secured_virt.rolefiles.store import PolicyStore

        gate = Gate(
            PolicyStore(cfg.ua, cfg.pa),
            AuditLog.from_config(cfg),
            role_sessions=ActiveRoles.from_config(cfg),
        )
        verdict = gate.authorize(ident, op, Target(cfg.host_object))
    except (rbac.PolicyError, OSError) as exc:
        sys.stderr.write(f"svirt-admin: {exc}\n")
        return EXIT_BAD_POLICY
    if verdict.allowed:
        gate.finish(verdict, "ok")
        return None
    sys.stderr.write(f"svirt-admin: {verdict.denial_message()}\n")
    return verdict.status or EXIT_DENIED


def _load_rbac(args, *, for_validate: bool = False):
    """UA/PA from --ua/--pa or the configured paths, with the same safety checks.

    Each of --ua and --pa replaces its own file only, by design: the other one is the
    configured file (``validate --ua NEW`` checks a new UA file against the installed PA, as
    ``edit`` would).  If the configuration cannot be read then, the ConfigError says which file
    it was needed for."""
    import rbac

    ua, pa = args.ua, args.pa
    if ua is None or pa is None:
        cfg = _config(args)
        ua, pa = ua or cfg.ua, pa or cfg.pa
    return rbac.load(ua, pa, CATALOGUE.names), ua, pa


def _attrs(args) -> dict:
    out = {}
    if getattr(args, "owner", None):
        out["owner"] = args.owner
    if getattr(args, "label", None):
        out["label"] = args.label
    return out


def _vm_metadata(cfg, name: str) -> tuple[dict | None, str]:
    """The VM's owner and sHype label as the gate reads them (``Service._resolve``: the
    domain's secured-virt metadata on the configured backend), and where they came from.

    (None, why) when the VM does not exist or cannot be looked up: never an exception, the
    caller falls back to --owner/--label."""
    from secured_virt.backends.base import BackendError, NoSuchDomain
    from secured_virt.backends.factory import open_backend
    from secured_virt.confinement import vmmeta

    try:
        backend = open_backend(
            cfg.backend, cfg.uri, xl_path=cfg.xl_path, xl_config_dir=cfg.xl_config_dir
        )
    except Exception as exc:  # unreachable hypervisor, missing bindings, ...
        return None, f"the backend {cfg.uri} could not be reached ({exc})"
    try:
        backend.lookup(name)
        try:
            raw = backend.get_metadata(name, vmmeta.NS)
        except BackendError:  # as the gate: unreadable metadata is no owner and no label
            raw = None
        return vmmeta.parse(raw).attrs(), f"the VM's metadata on {cfg.uri}"
    except NoSuchDomain:
        return None, f"VM '{name}' was not found on {cfg.uri}"
    except Exception as exc:
        return None, f"VM '{name}' could not be looked up on {cfg.uri} ({exc})"
    finally:
        with contextlib.suppress(Exception):
            backend.close()


def _describe_attrs(attrs: dict) -> str:
    return ", ".join(f"{k} {attrs[k]}" for k in ("owner", "label") if k in attrs) or "none"


def _resolve_attrs(args, cfg, vm: str, host_reason: str | None = None) -> dict:
    """The object attributes (owner, label) to decide with, and how they were found.

    Like the gate: a VM operation on an existing VM uses the VM's real owner and label; an
    explicit --owner/--label overrides each; a VM that is not there (or a backend that cannot
    be reached) leaves the flags alone.  Host operations are decided on the host object, which
    has no attributes: ``host_reason`` says so, and nothing is looked up (nor when both flags
    are given).  Returns {"attrs", "source", "found", "vm_attrs", "notes"}."""
    flags = _attrs(args)
    out = {"attrs": flags, "found": None, "vm_attrs": None, "notes": []}
    if host_reason is not None:
        out["source"] = "flags"
        out["notes"].append(
            f"{host_reason}: nothing is looked up; attributes: {_describe_attrs(flags)} "
            "(from the flags)"
        )
        return out
    if "owner" in flags and "label" in flags:
        out["source"] = "flags"
        out["notes"].append(
            f"owner and label from --owner/--label ({_describe_attrs(flags)}); "
            "the VM was not looked up"
        )
        return out
    real, where = _vm_metadata(cfg, vm)
    if real is None:
        out["found"] = False
        out["source"] = "flags"
        out["notes"].append(
            f"{where}, so the attributes come from the flags only: {_describe_attrs(flags)}"
        )
        return out
    out["found"] = True
    out["vm_attrs"] = real
    out["source"] = "vm" if not flags else "vm+flags"
    out["notes"].append(f"attributes from {where}: {_describe_attrs(real)}")
    for key, flag in (("owner", "--owner"), ("label", "--label")):
        if key in flags:
            was = f"the VM's {key} '{real[key]}'" if key in real else f"the VM has no {key}"
            out["notes"].append(f"{flag} {flags[key]} overrides {was}")
    out["attrs"] = {**real, **flags}
    return out


def cmd_operations(args) -> int:
    from secured_virt.access.operations import render_catalogue

    sys.stdout.write(render_catalogue(CATALOGUE, as_json=args.json, header=True))
    return EXIT_OK


def _target(args, cfg, op, command: str) -> str | None:
    """The object to check ``op`` on: the host object for host operations (no VM needed),
    else the VM named.  A mismatch is answered as asked, with a hint on stderr about what the
    front-end itself checks.  None: a VM operation without a VM (a usage error, reported)."""
    host = cfg.host_object
    if op.scope == HOST:
        if args.vm is None:
            return host
        if args.vm != host:
            sys.stderr.write(
                f"svirt-admin {command}: hint: '{op.name}' is a host operation; the front-end "
                f"checks it against the host object '{host}', not a VM (this answer is for "
                f"'{args.vm}' as asked; leave the VM out to check it as the front-end does)\n"
            )
        return args.vm
    if args.vm is None:
        sys.stderr.write(
            f"svirt-admin {command}: '{op.name}' acts on a VM: name it "
            f"(svirt-admin {command} {args.user} {op.name} VM)\n"
        )
        return None
    if args.vm == host:
        sys.stderr.write(
            f"svirt-admin {command}: hint: '{op.name}' is a VM operation; the front-end checks "
            f"it against a VM, and '{host}' is the host object (host operations: "
            "svirt-admin operations)\n"
        )
    return args.vm


def cmd_check(args) -> int:
    import rbac

    refused = require(args, "rbac-review")
    if refused is not None:
        return refused

    try:
        op = CATALOGUE.get(args.operation)
    except KeyError as exc:
        sys.stderr.write(f"svirt-admin check: {exc.args[0]}\n")
        return EXIT_USAGE
    cfg = _config(args)
    vm = _target(args, cfg, op, "check")
    if vm is None:
        return EXIT_USAGE
    try:
        pol, _ua, _pa = _load_rbac(args)
    except rbac.PolicyError as exc:
        sys.stderr.write(f"svirt-admin check: {exc}\n")
        return EXIT_BAD_POLICY
    host_reason = f"'{op.name}' is a host operation" if op.scope == HOST else None
    found = _resolve_attrs(args, cfg, vm, host_reason)
    attrs = found["attrs"]
    d = pol.decide(args.user, op.id, vm, attrs)
    acm = _acm_explain(cfg, vm, op) if (args.ua is None and args.pa is None) else None
    acm_denies = bool(acm and acm.get("mediated") and not acm.get("allowed"))
    allowed = d.allowed and not acm_denies
    if args.json:
        out = {
            "allowed": d.allowed,
            "user": args.user,
            "operation": op.as_dict(),
            "vm": vm,
            "attrs": attrs,
            "attrs_from": {k: found[k] for k in ("source", "found", "vm_attrs", "notes")},
            "role": d.role,
            "rule": d.rule,
            "reason": d.reason,
            "requires_auth": d.requires_auth,
            "via": list(d.via),
        }
        if args.explain:
            out["explanation"] = pol.explain(args.user, op.id, vm, attrs).as_dict()
        if acm is not None:
            out["acm"] = acm
            out["allowed"] = allowed
        print(json.dumps(out, indent=2))
    else:
        from secured_virt.access.wording import rbac_reason

        # one verdict on top, then each half by name: "RBAC: allowed" under a DENIED header
        # says which check refused instead of seeming to contradict it
        reason = rbac_reason(args.user, d.reason)
        verdict = "ALLOWED" if allowed else "DENIED"
        print(f"{verdict}: {args.user} {op.name} (operation {op.id}) on {vm}")
        print(f"  RBAC: allowed - {d.rule}" if d.allowed else f"  RBAC: denied - {reason}")
        if acm is not None and acm.get("mediated"):
            print(f"  ACM: {'denied' if acm_denies else 'allowed'} - {acm['reason']}")
        for fact in (acm or {}).get("state", ()):
            print(f"  note: {fact} (a state of the host, not an ACM denial)")
        if args.explain:
            print()
            print("VM attributes (owner, sHype label) used for the decision:")
            for note in found["notes"]:
                print(f"  {note}")
            print()
            print("RBAC (roles in UA/PA):")
            text = str(pol.explain(args.user, op.id, vm, attrs)).replace(d.reason, reason)
            for line in text.splitlines():
                if line.startswith("decision: "):
                    line = "RBAC decision: " + line[len("decision: ") :]
                print(f"  {line}" if line else "")
            if acm is not None:
                print(_acm_text(acm))
    return EXIT_OK if allowed else EXIT_DENIED


def _acm_explain(cfg, vm: str, op) -> dict | None:
    """The mandatory half of the answer, when sHype/ACM is on: the VM's label, and for
    operations that instantiate a domain every check a start would make now.

    Only a policy check (label, authorization, Chinese Wall, STE on resources) can deny; the
    dry run's "state" item (the domain is already running) is a fact about the host, which
    the hypervisor would report as a failure, so it is listed under "state" instead."""
    if not cfg.acm:
        return None
    from policy.verdict import RULE_STATE
    from secured_virt.service import Service
    from secured_virt.shype import INSTANTIATING

    try:
        svc = Service.from_config(cfg)
        acm = svc.acm
        sec = acm.describe(vm)
        out = {
            "policy": acm.active.name,
            "label": sec["display"],
            "ssidref": sec["ssidref"],
            "mediated": op.name in INSTANTIATING,
        }
        if not out["mediated"]:
            out["allowed"] = True
            out["reason"] = f"'{op.name}' does not instantiate a domain: no ACM hook applies"
            return out
        with acm.exclusive():
            report = acm.host.mediator.dry_run(sec["display"], acm.resources_of(vm), vm)
        checks = report.as_dict()["items"]
        for it in checks:
            it["policy_check"] = it["rule"] != RULE_STATE
        bad = [it for it in checks if not it["allowed"] and it["policy_check"]]
        out["allowed"] = not bad
        out["checks"] = checks
        out["state"] = [it["reason"] for it in checks if not it["policy_check"]]
        out["reason"] = bad[0]["reason"] if bad else "every ACM policy check passes"
        return out
    except Exception as exc:  # the RBAC answer stands; say why the ACM part is missing
        return {
            "mediated": False,
            "allowed": True,
            "error": str(exc),
            "reason": f"the ACM part could not be evaluated: {exc}",
        }


def _acm_text(acm: dict) -> str:
    lines = ["sHype/ACM (mandatory policy):"]
    if acm.get("error"):
        return "\n".join([*lines, f"  could not be evaluated: {acm['error']}"])
    lines.append(
        f"  active policy {acm['policy']}; VM label {acm['label']}"
        + (f" (ssidref {acm['ssidref']:#010x})" if acm.get("ssidref") else "")
    )
    if not acm["mediated"]:
        lines.append(f"  {acm['reason']}")
        return "\n".join(lines)
    for it in acm["checks"]:
        if not it.get("policy_check", True):
            verdict = "NOTE (state, not a policy check)" if not it["allowed"] else "PERMITTED"
        else:
            verdict = "PERMITTED" if it["allowed"] else "DENIED"
        lines.append(f"  {it['item']}: {verdict} - {it['reason']}")
    return "\n".join(lines)


def cmd_validate(args) -> int:
    import rbac

    if args.policy:
        import policy

        from .admin_policy import as_caller

        try:
            with as_caller():  # the file is read with the caller's rights, not sudo's
                c = policy.compile_file(args.policy)
        except policy.PolicyError as exc:  # not valid or not readable: a bad policy, exit 4
            sys.stderr.write(f"{exc}\n")
            return EXIT_BAD_POLICY
        if not args.quiet:
            print(
                f"{args.policy}: OK (sHype policy {c.name} {c.version}, "
                f"{len(c.vm_order)} VM labels, {len(c.res_order)} resource labels)"
            )
        if args.ua is None and args.pa is None:
            return EXIT_OK
    try:
        pol, ua, pa = _load_rbac(args, for_validate=True)
    except rbac.PolicyError as exc:  # not valid, missing, or not trustworthy: a bad policy, 4
        sys.stderr.write(f"{exc}\n")
        return EXIT_BAD_POLICY
    except ConfigError:  # main() names it and exits 4, as for every subcommand
        raise
    except Exception as exc:
        sys.stderr.write(f"svirt-admin validate: {exc}\n")
        return EXIT_FAILED
    if not args.quiet:
        print(f"{ua}: OK ({len(pol.users)} users)")
        print(f"{pa}: OK ({len(pol.roles)} roles)")
    return EXIT_OK


def cmd_review(args) -> int:
    import rbac

    if getattr(args, "realm", None):  # per realm, through svirtd: realm admins may ask too
        from .admin_realm import cmd_realm_review

        return cmd_realm_review(args)
    if args.kind is None or args.name is None:
        sys.stderr.write("svirt-admin review: give user|role|vm NAME, or --realm REALM\n")
        return EXIT_USAGE
    refused = require(args, "rbac-review")
    if refused is not None:
        return refused

    try:
        pol, _ua, _pa = _load_rbac(args)
    except rbac.PolicyError as exc:
        sys.stderr.write(f"svirt-admin review: {exc}\n")
        return EXIT_BAD_POLICY
    from .review import review

    if args.kind == "vm":  # the VM's real owner and label, as check and the gate use them
        cfg = _config(args)
        host = f"'{args.name}' is the host object" if args.name == cfg.host_object else None
        found = _resolve_attrs(args, cfg, args.name, host)
        if found["found"] is False and "was not found" not in found["notes"][0]:
            # not there yet is ordinary; a backend that cannot answer is worth a word
            sys.stderr.write(f"svirt-admin review: note: {found['notes'][0]}\n")
        attrs = found["attrs"]
        args = argparse.Namespace(
            **{**vars(args), "owner": attrs.get("owner"), "label": attrs.get("label")}
        )
    return review(pol, args)


def cmd_audit(args) -> int:
    from secured_virt.access import audit

    from .admin_policy import as_caller

    if not args.log:  # the host's own log: root's, or a delegated auditor's
        refused = require(args, "audit-verify" if args.action == "verify" else "audit-read")
        if refused is not None:
            return refused
    cfg = _config(args)
    path = args.log or cfg.audit_log
    # a log named here is read with the caller's rights (under sudo: not root's)
    files = as_caller() if args.log else contextlib.nullcontext()
    if args.action == "verify":
        with files:
            res = audit.verify(path)
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": res.ok,
                        "records": res.records,
                        "first_bad_line": res.first_bad,
                        "first_bad_seq": res.first_bad_seq,
                        "message": res.message,
                    }
                )
            )
        else:
            print(("OK: " if res.ok else "BROKEN: ") + res.message)
        return EXIT_OK if res.ok else EXIT_FAILED
    try:
        with files:
            recs = list(
                audit.read(
                    path,
                    user=args.user,
                    vm=args.vm,
                    denied=True if args.denied else None,
                    since=args.since,
                )
            )
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"svirt-admin audit show: {exc}\n")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(recs, indent=2))
        return EXIT_OK
    for r in recs:
        who = r.get("user", "?") + (f"->{r['acting_as']}" if r.get("acting_as") else "")
        if r.get("type") == "outcome":
            print(f"{r.get('time')} #{r.get('seq')} outcome of #{r.get('ref')}: {r.get('outcome')}")
            continue
        if r.get("type") == "recovered":
            print(
                f"{r.get('time')} #{r.get('seq')} RECOVERED {r.get('torn_bytes')} bytes of an "
                f"incomplete line cut off at offset {r.get('cut_at')} and kept in this record "
                f"(pid {r.get('pid')}; --json shows them)"
            )
            continue
        verdict = str(r.get("verdict", "?")).upper()
        print(
            f"{r.get('time')} #{r.get('seq')} {verdict:<7} {who} {r.get('op')} "
            f"{r.get('vm')} [{r.get('check')}] {r.get('rule')}"
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="svirt-admin",
        description="Manage and inspect secured-virt's role policy (UA/PA) and sHype policy.",
        epilog="example:\n  svirt-admin check alice start alice-web --explain",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="configuration file (root only)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name, func, help, example, exits=()):
        """A subcommand; ``example``: one command a line; ``exits``: (code, meaning) pairs
        shown in --help and the man page."""
        epilog = "example:\n" + "\n".join(f"  {line}" for line in example.splitlines())
        if exits:
            epilog += "\n\nexit status:\n" + "\n".join(
                textwrap.fill(t, 76, initial_indent=f"  {c}  ", subsequent_indent="     ")
                for c, t in exits
            )
        sp = sub.add_parser(
            name,
            help=help,
            description=help + ".",
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.set_defaults(func=func)
        sp.exit_codes = tuple(exits)  # read by man/generate.py
        return sp

    def files(sp):
        sp.add_argument("--ua", metavar="FILE", help="UA file instead of the configured one")
        sp.add_argument("--pa", metavar="FILE", help="PA file instead of the configured one")

    sp = add(
        "operations",
        cmd_operations,
        "print the operation catalogue",
        "svirt-admin operations --json",
    )
    sp.add_argument("--json", action="store_true", help="print as JSON")

    sp = add(
        "check",
        cmd_check,
        "decide whether USER may perform OP on VM",
        "svirt-admin check alice start alice-web --explain\nsvirt-admin check carol audit-read",
        exits=CHECK_EXITS,
    )
    sp.add_argument("user", metavar="USER", help="user name, as in the UA file")
    sp.add_argument("operation", metavar="OP", help="operation id or name")
    sp.add_argument(
        "vm",
        metavar="VM",
        nargs="?",
        help="VM name; leave it out for host operations (policy-show, audit-read...), which "
        "are checked against the host object (host_object, Domain-0 by default)",
    )
    sp.add_argument("--explain", action="store_true", help="show the whole reasoning")
    sp.add_argument(
        "--owner",
        help="treat the VM as owned by this user (for 'owned' scopes); default: the VM's "
        "real owner, when it exists",
    )
    sp.add_argument(
        "--label",
        help="treat the VM as carrying this sHype label (for 'label' scopes); default: the "
        "VM's real label, when it exists",
    )
    sp.add_argument("--json", action="store_true", help="print as JSON")
    files(sp)

    sp = add(
        "validate",
        cmd_validate,
        "check UA/PA files without installing or using them",
        "svirt-admin validate --ua /tmp/ua.xml --pa /tmp/pa.xml",
        exits=VALIDATE_EXITS,
    )
    sp.add_argument("-q", "--quiet", action="store_true", help="print nothing when valid")
    sp.add_argument("--policy", metavar="FILE", help="also (or only) check an sHype policy file")
    files(sp)

    sp = add(
        "review",
        cmd_review,
        "NIST RBAC review: what a user may do, a role's members "
        "and permissions, who may do what on a VM",
        "svirt-admin review user alice",
    )
    sp.add_argument("kind", choices=("user", "role", "vm"), nargs="?")
    sp.add_argument("name", nargs="?")
    sp.add_argument("--realm", help="review one realm through svirtd (root and the realm's admins)")
    sp.add_argument("--socket", help="with --realm: svirtd's socket (default: the configuration's)")
    sp.add_argument("--json", action="store_true", help="print as JSON")
    sp.add_argument("--owner", help="the VM's owner (for 'owned' scopes); default: its real owner")
    sp.add_argument(
        "--label", help="the VM's sHype label (for 'label' scopes); default: its real label"
    )
    files(sp)
    sp = add(
        "audit",
        cmd_audit,
        "show or verify the audit log",
        "svirt-admin audit show --user alice --denied",
    )
    sp.add_argument("action", choices=("show", "verify"))
    sp.add_argument("--user", help="only records of this user (caller or acted-as)")
    sp.add_argument("--vm", help="only records about this VM")
    sp.add_argument("--denied", action="store_true", help="only denied decisions")
    sp.add_argument("--since", metavar="TIME", help="only records at or after this RFC 3339 time")
    sp.add_argument("--log", metavar="FILE", help="audit log instead of the configured one")
    sp.add_argument("--json", action="store_true", help="print as JSON")

    # Subcommand families that live in their own modules register themselves here.
    import importlib

    for modname in EXTENSIONS:
        try:
            mod = importlib.import_module(f"secured_virt.cli.{modname}")
        except ModuleNotFoundError as exc:
            if exc.name != f"secured_virt.cli.{modname}":
                raise
            continue
        mod.register(sub, add, files)
    return p


#: exit status of check and validate, as their --help and the man page give them
CHECK_EXITS = (
    (EXIT_OK, "allowed"),
    (EXIT_USAGE, "usage error (unknown operation, no VM for a VM operation)"),
    (EXIT_DENIED, "denied (by RBAC, or with sHype/ACM on by a policy conflict)"),
    (EXIT_BAD_POLICY, "bad policy or configuration (UA/PA unusable, config file invalid)"),
)
VALIDATE_EXITS = (
    (EXIT_OK, "valid"),
    (EXIT_FAILED, "an unexpected failure (the message says what)"),
    (EXIT_USAGE, "usage error"),
    (
        EXIT_BAD_POLICY,
        "bad policy or configuration: a UA/PA or sHype policy file that is invalid, missing or "
        "cannot be trusted (not root-owned, or writable by others), or the configuration file",
    ),
)

#: modules adding subcommands: each has register(sub, add, files) — see build_parser
EXTENSIONS = ("admin_edit", "admin_policy", "admin_labels", "admin_daemon", "admin_realm")


def main(argv: list[str] | None = None) -> int:
    bytecode_readable_like_source()  # in-process callers too: caches readable like sources
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        sys.stderr.write(
            "svirt-admin: error: a COMMAND is required (svirt-admin --help lists them)\n"
        )
        return EXIT_USAGE
    try:
        return args.func(args)
    except ConfigError as exc:  # every subcommand: the message names the file and line
        sys.stderr.write(f"svirt-admin: {exc}\n")
        return EXIT_BAD_POLICY
    except KeyboardInterrupt:
        return EXIT_FAILED


def entry(*, require_isolated: bool = True) -> None:
    """The program: the console script, bin/ launcher and ``python -m`` start here, hardened
    first (secured_virt.hardening.start_program); never returns."""
    from secured_virt.hardening import start_program

    start_program(main, require_isolated=require_isolated)


if __name__ == "__main__":  # python -m: the caller chose the interpreter's flags
    entry(require_isolated=False)
