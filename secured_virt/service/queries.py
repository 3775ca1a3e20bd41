"""The read-only commands: list (filtered to what the caller may see), dominfo, domstate,
domid/domuuid, dumpxml, snapshot-list.

They change nothing, but they are gated and audited like the rest: seeing a VM is a right.
"""

from __future__ import annotations

import time

from secured_virt.access.gate import Target, acting_as
from secured_virt.confinement import vmmeta
from secured_virt.requests import EXIT_OK, Reply

from .support import _acm_display, _LazyAttrs


class QueryCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

    def _cmd_list(self, ident, args, interaction) -> Reply:
        op = self._op("list")
        include_inactive = bool(args.get("all") or args.get("inactive"))
        domains = self.backend.list_domains(include_inactive=include_inactive)
        if args.get("inactive"):
            domains = [d for d in domains if d.id is None]
        user = acting_as(ident) or ident.user
        plain_root = ident.uid == 0 and acting_as(ident) is None
        # metadata is fetched only for domains a scoped rule (owner, label) asks about, and for
        # the rows shown: with 10k domains and name-based roles, list makes no per-domain calls
        metas = {d.name: _LazyAttrs(self._meta, d.name) for d in domains}
        if plain_root or getattr(ident, "as_refused", False):
            visible = [d for d in domains] if plain_root else []
        else:
            try:
                pol = self.store.current()
            except Exception:  # fail closed, and audit it like every other decision
                return self._denied(self.gate.authorize(ident, op, Target("*"), interaction))
            allowed = set(
                pol.filter_visible(user, op.id, ((d.name, metas[d.name]) for d in domains))
            )
            visible = [d for d in domains if d.name in allowed]
        v = self.gate.authorize_listing(ident, op, len(visible), len(domains))
        if not v.allowed:
            return self._denied(v)
        self.gate.finish(v, "ok")
        out = []
        for d in sorted(visible, key=lambda d: (d.id is None, d.id or 0, d.name)):
            row = d.as_dict()
            m = metas[d.name].meta
            row["owner"] = m.owner
            row["acm_label"] = (
                self.acm.vm_label(d.name) if self.acm is not None else _acm_display(m)
            )
            if args.get("long"):
                row["security"] = self._security(m, d.name)
            out.append(row)
        return Reply(EXIT_OK, data={"domains": out})

    def _security(self, m: vmmeta.VmMeta, name: str | None = None) -> dict | None:
        if self.acm is not None and name is not None:
            return self.acm.describe(name)
        if not m.label:
            return None
        return {
            "label": m.label,
            "policy": m.label_policy,
            "display": _acm_display(m),
            "ssidref": None,
        }

    def _cmd_dominfo(self, ident, args, interaction) -> Reply:
        name = args.get("domain")

        def act(info):
            d = info.as_dict()
            m = self._meta(name)
            d["owner"] = m.owner
            d["security"] = self._security(m, name)
            return d

        return self._run(ident, "dominfo", name, interaction, act)

    def _cmd_domstate(self, ident, args, interaction) -> Reply:
        return self._run(
            ident,
            "domstate",
            args.get("domain"),
            interaction,
            lambda info: {"state": info.state, "reason": None},
        )

    def _cmd_domid(self, ident, args, interaction) -> Reply:
        return self._run(
            ident,
            "domid",
            args.get("domain"),
            interaction,
            lambda info: {"id": info.id, "uuid": info.uuid, "name": info.name},
        )

    _cmd_domuuid = _cmd_domid

    def _cmd_dumpxml(self, ident, args, interaction) -> Reply:
        name = args.get("domain")
        return self._run(
            ident,
            "dumpxml",
            name,
            interaction,
            lambda info: {
                "xml": self.backend.dumpxml(
                    name,
                    inactive=bool(args.get("inactive")),
                    security_info=bool(args.get("security_info")),
                )
            },
        )

    def _cmd_snapshot_list(self, ident, args, interaction) -> Reply:
        name = args.get("domain")

        def act(info):
            snaps = self.backend.snapshot_list(name)
            return {
                "snapshots": [
                    {
                        "name": s.name,
                        "creation": time.strftime(
                            "%Y-%m-%d %H:%M:%S %z", time.localtime(s.creation_time)
                        ),
                        "creation_time": s.creation_time,
                        "state": s.state,
                        "description": s.description,
                        "current": s.current,
                    }
                    for s in snaps
                ]
            }

        return self._run(ident, "snapshot-list", name, interaction, act)
