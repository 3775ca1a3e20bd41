"""Editing an installed policy through the XSM API (seed 000's XSMPolicy class).

Why edits are whole-policy changes: an edit (add a type, remove a label, ...) produces a new
version of the policy, which goes through exactly the checks a new policy file would: schema,
semantic checks, compilation, and - when the policy is loaded - the all-or-nothing runtime
update (FromPolicy = the loaded version, replay over running domains).  So an edit can never
leave a half-changed or unenforceable policy behind, and a refused edit changes nothing.
Every edit raises the minor version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..compiled import CompiledPolicy
from ..constants import (
    ACM_LABEL_ANY,
    ACM_LABEL_RES,
    ACM_LABEL_VM,
    CHWALL,
    STE,
    XS_INST_BOOT,
    XS_INST_LOAD,
)
from ..errors import PolicyFileError, Xserr, XsmError
from ..model import AcmPolicy, ConflictSet, FromPolicy, ResourceLabel, VmLabel, parse_version
from .records import PolicyState, failed


class PolicyHost(Protocol):
    """What an editor needs of the host that hands it out (:class:`~policy.xsm.host.XsmHost`).

    Spelled out here because the host imports this module (``XsmHost.policy()`` returns an
    :class:`XsmPolicy`); the editor works on any host that offers these.
    """

    @property
    def active(self) -> CompiledPolicy: ...

    def installed(self, name: str) -> AcmPolicy: ...

    def _flags_of(self, name: str) -> int: ...

    def _locked(self) -> AbstractContextManager[None]: ...

    def _set_compiled(self, new: CompiledPolicy, flags: int, overwrite: bool) -> PolicyState: ...

    @property
    def mediator(self) -> Any: ...


def _component(c: str) -> str:
    up = str(c).upper()
    if up in ("STE", "SIMPLETYPEENFORCEMENT"):
        return STE
    if up in ("CHWALL", "CHINESEWALL"):
        return CHWALL
    raise XsmError(Xserr.GENERAL_FAILURE, f"unknown policy component {c!r}: use STE or CHWALL")


def _label_type(t: Any) -> int:
    if isinstance(t, int):
        return t
    return {
        "vm": ACM_LABEL_VM,
        "res": ACM_LABEL_RES,
        "resource": ACM_LABEL_RES,
        "any": ACM_LABEL_ANY,
    }.get(str(t).lower(), 0)


class XsmPolicy:
    """A handle on one installed policy (by name).  Reads return plain data; edits return a
    :class:`~policy.xsm.records.PolicyState` (``.ok``/``.xserr``/``.message``)."""

    def __init__(self, host: PolicyHost, name: str, *, dry_run: bool = False) -> None:
        self._host = host
        self.name = name
        #: with dry_run, an edit changes nothing: it only says whether it would pass (the
        #: PolicyState of the would-be update) and leaves the edited policy in ``preview``
        self.dry_run = dry_run
        self.preview: AcmPolicy | None = None

    # ------------------------------------------------------------------ reads
    @property
    def policy(self) -> AcmPolicy:
        return self._host.installed(self.name)

    def get_record(self) -> dict[str, Any]:
        p = self.policy
        return {
            "name": p.name,
            "version": p.version,
            "flags": self._host._flags_of(p.name),
            "header": p.header.as_record(),
        }

    def get_header(self) -> dict[str, str]:
        """The sHype header: policyname, policyurl, reference, date, namespaceurl, version."""
        return self.policy.header.as_record()

    def get_types(self, component: str) -> list[str]:
        p = self.policy
        return list(p.ste_types if _component(component) == STE else p.chwall_types)

    def get_conflict_sets(self) -> list[dict[str, Any]]:
        return [cs.as_record() for cs in self.policy.conflict_sets]

    def get_labels(self, label_types: int | str = ACM_LABEL_ANY) -> list[dict[str, Any]]:
        """Label records (type vm/res, name, stetypes, chwalltypes) of the requested kinds."""
        t = _label_type(label_types)
        p = self.policy
        out: list[dict[str, Any]] = []
        if t & ACM_LABEL_VM:
            out += [lbl.as_record() for lbl in p.vm_labels]
        if t & ACM_LABEL_RES:
            out += [lbl.as_record() for lbl in p.resource_labels]
        return out

    def get_xml(self) -> str:
        return self.policy.xml.decode("utf-8")

    def get_map(self) -> str:
        return self._compiled().map_text

    def get_binary(self) -> bytes:
        return self._compiled().binary

    def _compiled(self):
        if self.name == self._host.active.name:
            return self._host.active
        return self.policy.compile()

    # ------------------------------------------------------------------ edits
    def _edit(
        self, change: Callable[[AcmPolicy], dict[str, Any]], header: dict[str, str] | None = None
    ) -> PolicyState:
        with self._host._locked():
            try:
                cur = self.policy
                # ``from`` renames belong to the update that produced ``cur``; drop them
                cur = dataclasses.replace(
                    cur,
                    vm_labels=tuple(dataclasses.replace(x, from_name=None) for x in cur.vm_labels),
                    resource_labels=tuple(
                        dataclasses.replace(x, from_name=None) for x in cur.resource_labels
                    ),
                )
                changes = change(cur)
                loaded = self.name == self._host.active.name
                major, minor = cur.version_tuple
                hdr = dataclasses.replace(cur.header, version=f"{major}.{minor + 1}")
                if loaded:
                    hdr = dataclasses.replace(hdr, from_policy=FromPolicy(cur.name, cur.version))
                if header:
                    hdr = dataclasses.replace(hdr, **header)
                new = cur.evolve(header=hdr, source=f"<edit of {self.name}>", **changes)
            except XsmError as exc:
                return failed(exc.xserr, exc.message)
            except PolicyFileError as exc:
                return failed(
                    exc.xserr,
                    f"the edited policy would be invalid: {exc.problems[0].message}",
                    problems=[p.message for p in exc.problems],
                )
            if self.dry_run:
                return self._preview(new, loaded)
            flags = self._host._flags_of(self.name)
            state = self._host._set_compiled(
                new.compile(), flags & (XS_INST_LOAD | XS_INST_BOOT), overwrite=True
            )
            if state.ok:
                self.name = new.name
            return state

    def _preview(self, new: AcmPolicy, loaded: bool) -> PolicyState:
        """The dry run of an edit: the same checks as the update (compilation, and for the
        loaded policy the all-or-nothing replay over the running domains), nothing changed."""
        self.preview = new
        compiled = new.compile()
        errors = self._host.mediator.check_update(compiled) if loaded else []
        if errors:
            return failed(
                Xserr.HV_OP_FAILED,
                f"the edit of {self.name} would be refused; nothing was changed",
                errors,
            )
        return PolicyState(
            xserr=0,
            message=f"policy {new.name} {new.version} would be "
            + ("loaded" if loaded else "installed"),
            xs_ref=new.name,
            repr=new.xml.decode("utf-8", "replace"),
            version=new.version,
        )

    def set_header(self, **fields: str) -> PolicyState:
        """Change header fields: policyurl, reference, date, namespaceurl, version.

        The policy name cannot change while the policy is loaded or through this call; a
        version, when given, must be higher than the current one.
        """
        keymap = {
            "policyurl": "url",
            "reference": "reference",
            "date": "date",
            "namespaceurl": "namespace_url",
            "version": "version",
        }
        unknown = set(fields) - set(keymap)
        if "policyname" in fields:
            return failed(
                Xserr.BAD_POLICY_NAME,
                "the policy name cannot be changed through the header; install the "
                "policy under its new name instead",
            )
        if unknown:
            raise XsmError(Xserr.GENERAL_FAILURE, f"unknown header field(s): {sorted(unknown)}")
        hdr = {keymap[k]: v for k, v in fields.items()}
        if "version" in hdr:
            cur = self.policy.version_tuple
            try:
                ok = parse_version(hdr["version"]) > cur
            except ValueError:
                ok = False
            if not ok:
                return failed(
                    Xserr.VERSION_PREVENTS_UPDATE,
                    f"version {hdr['version']} is not higher than {cur[0]}.{cur[1]}",
                )
        return self._edit(lambda p: {}, header=hdr)

    def add_type(self, component: str, type_name: str) -> PolicyState:
        comp = _component(component)

        def change(p: AcmPolicy) -> dict[str, Any]:
            types = p.ste_types if comp == STE else p.chwall_types
            if type_name in types:
                raise XsmError(
                    Xserr.POLICY_HAS_DUPLICATES, f"{comp} type {type_name!r} already exists"
                )
            key = "ste_types" if comp == STE else "chwall_types"
            flag = "has_ste" if comp == STE else "has_chwall"
            return {key: (*types, type_name), flag: True}

        return self._edit(change)

    def rm_type(self, component: str, type_name: str) -> PolicyState:
        """Remove a type; refused while any label or conflict set still uses it."""
        comp = _component(component)

        def change(p: AcmPolicy) -> dict[str, Any]:
            types = p.ste_types if comp == STE else p.chwall_types
            if type_name not in types:
                raise XsmError(Xserr.GENERAL_FAILURE, f"{comp} type {type_name!r} does not exist")
            if comp == STE:
                users = [
                    lbl.name
                    for lbl in (*p.vm_labels, *p.resource_labels)
                    if type_name in lbl.ste_types
                ]
            else:
                users = [lbl.name for lbl in p.vm_labels if type_name in lbl.chwall_types]
                users += [
                    f"conflict set {cs.name}" for cs in p.conflict_sets if type_name in cs.types
                ]
            if users:
                raise XsmError(
                    Xserr.BAD_LABEL,
                    f"{comp} type {type_name!r} is still used by "
                    f"{', '.join(users)}; change those first",
                )
            key = "ste_types" if comp == STE else "chwall_types"
            return {key: tuple(t for t in types if t != type_name)}

        return self._edit(change)

    def add_conflict_set(self, name: str, types: Iterable[str]) -> PolicyState:
        return self._edit(
            lambda p: {"conflict_sets": (*p.conflict_sets, ConflictSet(name, tuple(types)))}
        )

    def rm_conflict_set(self, name: str, types: Iterable[str] | None = None) -> PolicyState:
        """Remove the conflict set(s) called ``name`` (only the one with ``types`` if given)."""
        want = None if types is None else set(types)

        def change(p: AcmPolicy) -> dict[str, Any]:
            keep = tuple(
                cs
                for cs in p.conflict_sets
                if not (cs.name == name and (want is None or set(cs.types) == want))
            )
            if len(keep) == len(p.conflict_sets):
                raise XsmError(Xserr.BAD_CONFLICTSET, f"no conflict set {name!r} to remove")
            return {"conflict_sets": keep}

        return self._edit(change)

    def add_label(self, record: dict[str, Any]) -> PolicyState:
        """Add a label: ``{"type": "vm"|"res", "name": ..., "stetypes": [...],
        "chwalltypes": [...]}`` (a resource label has exactly one STE type)."""
        kind = _label_type(record.get("type", "vm"))
        name = record.get("name", "")
        ste = tuple(record.get("stetypes", ()))
        cw = tuple(record.get("chwalltypes", ()))

        def change(p: AcmPolicy) -> dict[str, Any]:
            if kind == ACM_LABEL_VM:
                if p.vm_label(name) is not None:
                    raise XsmError(Xserr.POLICY_HAS_DUPLICATES, f"VM label {name!r} exists")
                return {"vm_labels": (*p.vm_labels, VmLabel(name, ste, cw))}
            if kind == ACM_LABEL_RES:
                if p.resource_label(name) is not None:
                    raise XsmError(Xserr.POLICY_HAS_DUPLICATES, f"resource label {name!r} exists")
                if len(ste) != 1 or cw:
                    raise XsmError(
                        Xserr.BAD_LABEL,
                        "a resource label has exactly one STE type and no CHWALL type",
                    )
                return {"resource_labels": (*p.resource_labels, ResourceLabel(name, ste[0]))}
            raise XsmError(Xserr.BAD_LABEL, "label type must be vm or res")

        return self._edit(change)

    def rm_label(self, name: str, label_types: int | str = ACM_LABEL_ANY) -> PolicyState:
        """Remove a VM and/or resource label; refused while a running domain uses it."""
        t = _label_type(label_types)

        def change(p: AcmPolicy) -> dict[str, Any]:
            out: dict[str, Any] = {}
            if t & ACM_LABEL_VM and p.vm_label(name) is not None:
                out["vm_labels"] = tuple(lbl for lbl in p.vm_labels if lbl.name != name)
            if t & ACM_LABEL_RES and p.resource_label(name) is not None:
                out["resource_labels"] = tuple(lbl for lbl in p.resource_labels if lbl.name != name)
            if not out:
                raise XsmError(Xserr.BAD_LABEL, f"no label {name!r} to remove")
            return out

        return self._edit(change)
