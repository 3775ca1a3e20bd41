"""Questions a graphical or remote front-end asks in one request: what may I do here, the
audit trail, and ``svirt-admin check --explain`` — answered by the service, never guessed by
the front-end.

Why these live in the service and not in the web console: a front-end decides nothing (see
docs/architecture.md).  A page that showed a "destroy" button the gate would refuse, or hid
one the gate would allow, would be a second policy; so the console asks the service which
operations RBAC (and the realm step) would let the caller try on each VM it may see, in one
request per page (``vm-actions``), instead of one round trip per VM and operation.  The
answer only shapes buttons: every button still goes through the gate, which may refuse (the
sHype policy, a password, the VM's state) and whose reason the page then shows.

``vm-actions`` is audited as the ``list`` it contains; the per-button questions are not
audited, like ``Gate.may`` (the requests they lead to are).  ``audit-show`` needs
``audit-read`` and ``explain`` needs ``rbac-review`` on the host object, exactly as
``svirt-admin audit show`` and ``svirt-admin check`` do; both are gated and audited.
"""

from __future__ import annotations

import collections

from secured_virt.access import audit as audit_log
from secured_virt.access.gate import Target, acting_as
from secured_virt.requests import EXIT_OK, EXIT_USAGE, Reply

from .errors import UserError
from .support import _LazyAttrs

#: most operations one vm-actions request may ask about (a page's buttons, not the catalogue)
MAX_ASKED = 32
#: most audit records one audit-show returns (the newest first)
MAX_AUDIT = 1000


class FrontendViewCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _cmd_list, _host_op, gate,
    store, tenancy and backend."""

    def _cmd_vm_actions(self, ident, args, interaction) -> Reply:
        """``list --all`` plus, on each row, ``may`` (the asked VM operations RBAC and the
        realm step allow the caller on it) and ``auth`` (those that will ask for a password);
        ``host_may``/``host_auth`` the same for the asked host operations."""
        vm_ops = self._asked_ops(args.get("ops"), "vm")
        host_ops = self._asked_ops(args.get("host_ops"), "host")
        listing = self._cmd_list(ident, {"all": True}, interaction)
        if listing.status != EXIT_OK:
            return listing
        rows = listing.data["domains"]
        plain_root = ident.uid == 0 and acting_as(ident) is None
        user = acting_as(ident) or ident.user
        forced = frozenset(getattr(self.gate, "auth_operations", ()) or ())
        host = self.host_target()
        if plain_root:
            for row in rows:
                row["may"], row["auth"] = [o.name for o in vm_ops], []
            data = {"domains": rows, "host_may": [o.name for o in host_ops], "host_auth": []}
            return Reply(EXIT_OK, data=data)
        try:
            pol = self.store.current()
        except Exception:  # the list above was allowed, so this is a reload race: no buttons
            pol = None
        metas = {r["name"]: _LazyAttrs(self._meta, r["name"]) for r in rows}
        allowed_by_op = {}
        for op in vm_ops:
            allowed_by_op[op.name] = (
                set(pol.filter_visible(user, op.id, ((n, metas[n]) for n in metas)))
                if pol is not None
                else set()
            )
        # a decision per allowed pair only when one of the user's roles wants a password
        try:
            role_auth = pol is not None and any(
                pol.role_requires_auth(r) for r in pol.authorized_roles(user)
            )
        except Exception:  # unknown to the policy: ask each decision (fail towards asking)
            role_auth = True
        for row in rows:
            name = row["name"]
            may, auth = [], []
            for op in vm_ops:
                if name not in allowed_by_op[op.name]:
                    continue
                target = Target(name, row.get("uuid"), metas[name])
                if self.tenancy and self._realm_crossing(ident, op, target):
                    continue
                may.append(op.name)
                if op.name in forced or (
                    role_auth and pol.decide(user, op.id, name, metas[name]).requires_auth
                ):
                    auth.append(op.name)
            row["may"], row["auth"] = may, auth
        host_may, host_auth = [], []
        for op in host_ops:
            if pol is None:
                break
            d = pol.decide(user, op.id, host.name, host.attrs)
            if d.allowed and not (self.tenancy and self._realm_crossing(ident, op, host)):
                host_may.append(op.name)
                if d.requires_auth or op.name in forced:
                    host_auth.append(op.name)
        return Reply(EXIT_OK, data={"domains": rows, "host_may": host_may, "host_auth": host_auth})

    def _realm_crossing(self, ident, op, target) -> bool:
        check = self._realm_check(ident, op, target)
        if check is None:
            return False
        try:
            return bool(check())
        except Exception:  # fail closed: a realm that cannot be told is not yours
            return True

    @staticmethod
    def _asked_ops(names, scope: str):
        from secured_virt.access.operations import CATALOGUE

        if names is None:
            return []
        if not isinstance(names, list) or len(names) > MAX_ASKED:
            raise UserError(f"vm-actions: ask about a list of at most {MAX_ASKED} operations")
        out = []
        for n in names:
            try:
                op = CATALOGUE.get(n)
            except (KeyError, TypeError):
                raise UserError(f"vm-actions: unknown operation {n!r}", EXIT_USAGE) from None
            if op.scope != scope:
                raise UserError(f"vm-actions: '{op.name}' is not a {scope} operation", EXIT_USAGE)
            out.append(op)
        return out

    # -- the audit trail -----------------------------------------------------------------------
    def _cmd_audit_show(self, ident, args, interaction) -> Reply:
        """The newest ``limit`` records matching user / VM / decision (``allowed`` or
        ``denied``), newest first; ``svirt-admin audit show`` through svirtd."""
        decision = args.get("decision")
        if decision not in (None, "", "allowed", "denied"):
            return Reply(EXIT_USAGE, message="audit-show: decision is 'allowed' or 'denied'")
        limit = args.get("limit", 200)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_AUDIT:
            return Reply(EXIT_USAGE, message=f"audit-show: limit is 1 to {MAX_AUDIT}")
        user, vm = args.get("user") or None, args.get("vm") or None
        for what, value in (("user", user), ("vm", vm)):
            if value is not None and (not isinstance(value, str) or len(value) > 256):
                return Reply(EXIT_USAGE, message=f"audit-show: {what} must be a short string")
        denied = {"allowed": False, "denied": True}.get(decision or "")

        def read():
            path = self.config.audit_log
            newest = collections.deque(maxlen=limit)
            total = 0
            for rec in audit_log.read(path, user=user, vm=vm, denied=denied):
                if decision and rec.get("type") != "decision":
                    continue
                newest.append(rec)
                total += 1
            return {"records": list(reversed(newest)), "matched": total, "limit": limit}

        return self._host_op(ident, "audit-read", interaction, read)

    # -- check --explain -----------------------------------------------------------------------
    def _cmd_explain(self, ident, args, interaction) -> Reply:
        """``svirt-admin check USER OP [VM] --explain --json`` through svirtd: RBAC's answer
        and explanation, the realm step and, with sHype/ACM on, the VM's label and for
        operations that instantiate a domain every check a start would make now."""
        from secured_virt.access.operations import CATALOGUE

        who, op_name, vm = args.get("user"), args.get("operation"), args.get("domain") or None
        if not isinstance(who, str) or not who or len(who) > 256:
            return Reply(EXIT_USAGE, message="explain: name the user to check")
        try:
            op = CATALOGUE.get(op_name)
        except (KeyError, TypeError):
            return Reply(EXIT_USAGE, message=f"explain: unknown operation {op_name!r}")
        host = self.host_target()
        if op.scope == "host":
            vm = host.name
        elif vm is None or not isinstance(vm, str):
            return Reply(EXIT_USAGE, message=f"explain: '{op.name}' acts on a VM: name it")

        def answer():
            pol = self.store.current()
            if vm == host.name:
                target, found = host, True
            else:
                target, _info = self._resolve(vm)
                found = target.exists
            attrs = dict(target.attrs or {})
            d = pol.decide(who, op.id, vm, attrs)
            explained = pol.explain(who, op.id, vm, attrs)
            out = {
                "user": who,
                "operation": op.as_dict(),
                "vm": vm,
                "vm_found": found,
                "attrs": attrs,
                "rbac": {
                    "allowed": d.allowed,
                    "role": d.role,
                    "rule": d.rule,
                    "reason": d.reason,
                    "requires_auth": d.requires_auth,
                    "via": list(d.via),
                },
                "explanation": explained.as_dict(),
                "explanation_text": str(explained),
            }
            realm = None
            if self.tenancy:
                try:
                    realm = self.tenancy.refusal(
                        who,
                        root=False,
                        op_name=op.name,
                        op_scope=op.scope,
                        vm=None if op.scope == "host" else vm,
                        attrs=attrs,
                        label=None,
                    )
                except Exception as exc:
                    realm = f"the realm check failed ({exc}); refusing"
            out["realm"] = realm
            out["acm"] = self._acm_explained(vm, op) if vm != host.name else None
            acm_denies = bool(
                out["acm"] and out["acm"].get("mediated") and not out["acm"]["allowed"]
            )
            out["allowed"] = bool(d.allowed and not realm and not acm_denies)
            return out

        return self._host_op(ident, "rbac-review", interaction, answer)

    def _acm_explained(self, vm: str, op) -> dict | None:
        if self.acm is None:
            return None
        from policy.verdict import RULE_STATE
        from secured_virt.shype import INSTANTIATING

        try:
            sec = self.acm.describe(vm)
            out = {
                "policy": self.acm.active.name,
                "label": sec["display"],
                "ssidref": sec["ssidref"],
                "mediated": op.name in INSTANTIATING,
            }
            if not out["mediated"]:
                out["allowed"] = True
                out["reason"] = f"'{op.name}' does not instantiate a domain: no ACM hook applies"
                return out
            with self.acm.exclusive():
                report = self.acm.host.mediator.dry_run(
                    sec["display"], self.acm.resources_of(vm), vm
                )
            checks = report.as_dict()["items"]
            for it in checks:
                it["policy_check"] = it["rule"] != RULE_STATE
            bad = [it for it in checks if not it["allowed"] and it["policy_check"]]
            out.update(
                allowed=not bad,
                checks=checks,
                reason=bad[0]["reason"] if bad else "every ACM policy check passes",
            )
            return out
        except Exception as exc:  # the RBAC answer stands; say why the ACM part is missing
            return {"mediated": False, "allowed": True, "reason": f"not evaluated: {exc}"}
