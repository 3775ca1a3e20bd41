"""The read-only commands: list (filtered to what the caller may see), dominfo, domstate,
domid/domuuid, dumpxml, snapshot-list.

They change nothing, but they are gated and audited like the rest: seeing a VM is a right.

A VM's sHype/ACM label is shown by one rule: to root, and to callers whom RBAC allows
``getlabel`` on that VM.  ``list --label``/``--long``, ``dominfo`` and ``dumpxml`` carry the
label only for those callers (the label column is empty, the security section absent, our
``<label>`` element removed from the XML otherwise).  Why this rule and not "the label is part
of seeing the VM": root's PA then says exactly who sees labels (a label names the tenant and the
conflict class of a VM, which a role that only runs it need not learn), and ``getlabel`` stays
a right worth granting rather than a name for something every viewer already has.  The ACM
decisions themselves (a refused start, ``dry-run``) still name the labels they decide on: a
refusal that hid its reason would help nobody.
"""

from __future__ import annotations

import dataclasses
import time

from lxml import etree

from secured_virt.access.gate import AuditFailure, Target, acting_as
from secured_virt.backends.base import BackendError, virsh_order
from secured_virt.confinement import vmmeta
from secured_virt.requests import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Reply

from . import listing
from .errors import UserError
from .support import _acm_display, _LazyAttrs, _with_flags


def _listed_meta(snap):
    """A row's metadata from the listing's own handle (the facade's ``_meta`` for a name)."""

    def fetch(name: str) -> vmmeta.VmMeta:
        try:
            return vmmeta.parse(snap.metadata(name, vmmeta.NS))
        except BackendError:
            return vmmeta.VmMeta()

    return fetch


#: the most rows one ``rows`` frame may carry (a frame stays far below the reply limit)
MAX_STREAM_ROWS = 1000


def _stream_rows(args, interaction) -> int:
    """How many rows per ``rows`` frame a streamed ``list`` sends ahead of its reply; 0: not
    streamed.  Only a conversation that can carry such frames streams (a remote front-end's,
    daemon.websessions); ``stream`` anywhere else is ignored, so the reply is the usual one.
    Streaming changes when the rows leave, never which: the decision is made on the whole
    list first and written to disk before the first row leaves (docs/audit-format.md)."""
    n = args.get("stream")
    if n is None or not callable(getattr(interaction, "rows", None)):
        return 0
    if type(n) is not int or not 1 <= n <= MAX_STREAM_ROWS:
        raise UserError(f"list: stream must be a number of rows from 1 to {MAX_STREAM_ROWS}")
    return n


class QueryCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

    def _cmd_list(self, ident, args, interaction) -> Reply:
        op = self._op("list")
        clash = listing.conflict(args)
        if clash:
            return Reply(EXIT_USAGE, message=clash)
        if args.get("format") not in (None, "text", "sxp"):
            return Reply(
                EXIT_USAGE,
                message=f"list: unknown --format {args.get('format')!r} (text or sxp, xm's "
                "list --long s-expressions)",
            )
        # one pass over libvirt: the rows, and (where the backend can) each row's own handle
        # for its metadata and managed-save image, so no name is looked up a second time
        # svirtd's libvirt backend keeps the rows between listings until libvirt's events say
        # a domain changed (backends.libvirt_rows): a list shows rows, and decides nothing on
        # their state
        listed = getattr(self.backend, "kept_listing", None) or getattr(
            self.backend, "listing", None
        )
        inactive = listing.wants_inactive(args)
        stream = _stream_rows(args, interaction)
        # streamed: decide on the names (one listAllDomains), ask each row as it is sent
        by_name = getattr(self.backend, "listing_by_name", None)
        if not (stream and by_name is not None and listing.selects_by_name(args)):
            by_name = None
        if by_name is not None:
            snap = by_name(include_inactive=inactive)
            domains, fetch = snap.domains, _listed_meta(snap)
        elif listed is not None:
            snap = listed(include_inactive=inactive)
            domains, fetch = snap.domains, _listed_meta(snap)
        else:
            snap, fetch = self.backend, self._meta
            domains = self.backend.list_domains(include_inactive=inactive)
        # svirtd starts these at boot (service.autostart); a streamed list marks its rows
        wished = self.autostart.wished() if by_name is None else None
        if wished:
            domains = [
                dataclasses.replace(d, autostart=True)
                if not d.autostart and d.uuid in wished
                else d
                for d in domains
            ]
        domains = listing.select(domains, args, self.backend)
        user = acting_as(ident) or ident.user
        plain_root = ident.uid == 0 and acting_as(ident) is None
        # metadata is fetched only for domains a scoped rule (owner, label) asks about, and for
        # the rows shown: with 10k domains and name-based roles, list makes no per-domain calls
        metas = {d.name: _LazyAttrs(fetch, d.name) for d in domains}
        labelled: set[str] | None = None  # names whose label the caller may see; None: all
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
            visible = self._realm_visible(ident, visible, metas)  # nothing crosses realms
            getlabel = self._op("getlabel").id
            labelled = set(
                pol.filter_visible(user, getlabel, ((d.name, metas[d.name]) for d in visible))
            )
        v = self.gate.authorize_listing(
            ident,
            op,
            len(visible),
            len(domains),
            # streamed rows leave before the reply: the decision goes to disk alone, first
            defer_read=self._defers_audit(op) and not stream,
        )
        if not v.allowed:
            return self._denied(v)
        if not stream:
            try:  # a read: its decision is written here with the outcome, before any reply
                self.gate.finish(v, "ok")
            except AuditFailure as exc:
                return Reply(EXIT_FAILED, message=str(exc), check="audit")
        try:
            out, sent = self._list_rows(
                args,
                interaction,
                snap,
                visible,
                metas,
                labelled,
                stream,
                by_name=by_name is not None,
            )
        except Exception as exc:  # rows may have left: the decision gets its outcome
            if stream:  # (its decision is on disk already: finish cannot refuse here)
                self.gate.finish(v, f"error: {exc}")
            raise
        if not stream:
            return Reply(EXIT_OK, data={"domains": out})
        gone = getattr(interaction, "broken", None) is not None
        try:
            self.gate.finish(v, f"the front-end went away after {sent} rows" if gone else "ok")
        except AuditFailure as exc:
            return Reply(EXIT_FAILED, message=str(exc), check="audit")
        return Reply(EXIT_OK, data={"domains": out, "streamed": sent})

    def _list_rows(
        self, args, interaction, snap, visible, metas, labelled, stream: int, *, by_name: bool
    ) -> tuple[list[dict], int]:
        """``list``'s rows of the ``visible`` domains, in virsh's order; in a streamed list
        (``stream`` > 0), handed to the front-end as they are made, ``stream`` at a time.
        Returns the rows not handed over and how many were.  ``by_name``: the domains are
        ``ListedName``s and each row is asked as it is made (one gone since the decision is
        left out, as if it had been listed a moment later).  ``labelled``: the names whose
        label the caller may see (None: all)."""
        long = bool(args.get("long") or args.get("format") == "sxp")  # sxp is list --long's
        out, sent = [], 0
        # a listing's rows (by_name's too) are in virsh's order already, and the filters keep
        # it; another backend's list_domains is sorted here
        ordered = visible if snap is not self.backend else sorted(visible, key=virsh_order)
        realms = bool(self.tenancy)  # asked once, not per row (_realm_of_row asks it again)
        wished = self.autostart.wished() if by_name else None  # else marked in _cmd_list
        prefetch = getattr(snap, "prefetch_metadata", None)
        if prefetch is not None and not by_name:  # each row's metadata, asked all at once
            prefetch([d.name for d in ordered], vmmeta.NS)
        for d in ordered:
            if by_name:
                d = snap.info(d.name)
                if d is None:
                    continue
            row = d.as_dict()
            if wished and not row["autostart"] and d.uuid in wished:
                row["autostart"] = True
            if args.get("title"):
                title = getattr(self.backend, "title", None)
                row["title"] = title(d.name) if title is not None else ""
            if args.get("managed_save"):
                listing.mark_saved(row, snap)
            m = metas[d.name].meta
            row["owner"] = m.owner
            row["realm"] = self._realm_of_row(d.name, m) if realms else m.realm
            if args.get("svirt"):  # sVirt's label: the running pair, the realm's QEMU uid
                dac_label = self._realm_dac(row["realm"])
                shown_cats = m.categories if d.id is not None else None
                parts = [p for p in (shown_cats, dac_label and str(dac_label)) if p]
                row["svirt_label"] = " ".join(parts) or None
            if labelled is None or d.name in labelled:
                row["acm_label"] = (
                    self.acm.vm_label(d.name) if self.acm is not None else _acm_display(m)
                )
            else:
                row["acm_label"] = None  # needs getlabel on this VM (see the module docstring)
            if long:
                row["security"] = (
                    self._security(m, d.name) if row["acm_label"] is not None else None
                )
            out.append(row)
            if stream and len(out) >= stream:
                if not interaction.rows(out):
                    break  # the front-end is gone: nobody gets the rest
                sent, out = sent + len(out), []
        return out, sent

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

        def act(info, m: vmmeta.VmMeta):  # m: the metadata decided on
            d = _with_flags(self.backend, name, info).as_dict()
            d.update(_virsh_dominfo(self.backend, name))
            if not d["autostart"] and info.uuid in self.autostart.wished():
                d["autostart"] = True  # svirtd starts it at boot (service.autostart)
            d["owner"] = m.owner
            shown = self._may_see_label(ident, name, info, m)
            d["security"] = self._security(m, name) if shown else None
            # sVirt: the category pair a running VM holds (its live metadata), like its label
            d["svirt_categories"] = m.categories if shown and info.id is not None else None
            d.update(self._svirt_dominfo(name, m))
            return d

        return self._run(ident, "dominfo", name, interaction, act, with_meta=True)

    def _svirt_dominfo(self, name: str, m: vmmeta.VmMeta) -> dict:
        """The realm, the DAC label its QEMU runs (or will run) as, and whether the kernel could
        enforce the category pair (SELinux): shown when realms or sVirt are on."""
        if not self.tenancy and self.categories is None:
            return {}
        from pwd import getpwuid

        from secured_virt.confinement import dac

        out: dict = {"realm": self._realm_of_row(name, m)}
        try:
            xml = self.backend.dumpxml(name)
            # no "<seclabel" at all: no seclabel element to find, and no parse (a tenth of
            # svirtd's CPU under load was lxml reading domain XML for this line)
            label = dac.domain_dac_label(xml) if "<seclabel" in xml else None
        except Exception:  # an XML that cannot be read shows no DAC label; dominfo goes on
            label = None
        if label is not None:
            try:
                who = getpwuid(label.uid).pw_name
            except KeyError:
                who = "no such user"
            out["dac_label"] = f"{label} ({who})"
        if out["realm"] or label is not None or m.categories:
            out["selinux"] = dac.selinux_status().text
        return out

    def _may_see_label(self, ident, name: str, info, m: vmmeta.VmMeta) -> bool:
        """Root, or a caller whom RBAC allows getlabel on this VM (the module docstring says
        why); the question is not audited: the request it belongs to is."""
        return self.gate.may(ident, self._op("getlabel"), Target(name, info.uuid, m.attrs()))

    def _cmd_domstate(self, ident, args, interaction) -> Reply:
        return self._run(
            ident,
            "domstate",
            args.get("domain"),
            interaction,
            lambda info: {
                "state": info.state,
                "reason": _state_reason(self.backend, args.get("domain"))
                if args.get("reason")
                else None,
            },
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

        def act(info):
            xml = self.backend.dumpxml(
                name,
                inactive=bool(args.get("inactive")),
                security_info=bool(args.get("security_info")),
            )
            if vmmeta.NS in xml and not self._may_see_label(ident, name, info, self._meta(name)):
                xml = _without_label(xml)
            return {"xml": xml}

        return self._run(ident, "dumpxml", name, interaction, act)

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


def _state_reason(backend, name: str) -> str | None:
    """virsh's reason word for ``domstate --reason`` (None where the backend has none)."""
    fn = getattr(backend, "state_reason", None)
    return fn(name) if fn is not None else None


def _virsh_dominfo(backend, name: str) -> dict:
    """The lines virsh's dominfo prints after Autostart: managed save and the host's security
    driver (model, DOI) with the domain's label.  A backend that cannot tell leaves them out
    (None), as virsh leaves out what libvirt does not support."""
    out: dict = {"managed_save": None, "security_model": None}
    managed = getattr(backend, "has_managed_save", None)
    if managed is not None:
        out["managed_save"] = "unknown" if (has := managed(name)) is None else has
    model = getattr(backend, "host_security_model", None)
    if model is not None:
        out["security_model"], out["security_doi"] = model()
        if out["security_model"]:
            out["security_label"], out["security_enforcing"] = backend.security_label(name)
    return out


_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=False
)


def _without_label(xml: str) -> str:
    """The domain XML without secured-virt's ``<label>`` elements (for callers who may not
    see the label).  XML the hypervisor produced but lxml cannot read is withheld entirely
    rather than shown with the label in it (fail closed)."""
    try:
        root = etree.fromstring(xml.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError:
        return "<!-- the domain XML could not be filtered for display; ask root -->\n"
    for el in list(root.iter(f"{{{vmmeta.NS}}}label")):
        el.getparent().remove(el)
    return etree.tostring(root, encoding="unicode")
