"""Each realm's own file: what its admin changed (members, realm roles, grants, assignments).

Why a file per realm, written only by svirtd: a realm admin is not root and never touches
root's UA/PA; svirtd checks every change against the realm (ARBAC97's can-assign/can-revoke
with the realm as the range: secured_virt.service.realms) and writes
``<realm_state_dir>/<realm>.xml`` root-owned, 0600, atomically.  At load the files are merged
with root's UA/PA (``rbac.load(..., extend=...)``): a realm role ``ops`` of realm ``acme`` is
the role ``acme/ops`` in the policy, so no realm can redefine or inherit root's roles or
another realm's.  Format::

    <RealmFile realm="acme">
      <Member user="bob"/>  <Member group="acme-devs"/>
      <Role name="ops">
        <VM name="acme-web"/>  <Operation name="start"/>  <Operation name="shutdown"/>
      </Role>
      <Assign user="bob" role="ops"/>  <Assign group="acme-devs" role="ops"/>
    </RealmFile>

A grant names VMs one by one (never "all", never a pattern), and every VM it names must not be
claimed by another realm, every operation must be one root allows the realm: otherwise the
file is a load error.  A file that does not load costs only its realm its last change: the
previous good version (``<realm>.good.xml``, kept by svirtd) is used instead, and the error is
reported; the other realms and root's files are untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from .model import Realm, RealmSet

ROLE_SEP = "/"
MAX_REALM_FILE_BYTES = 4 * 1024 * 1024


class RealmFileError(Exception):
    pass


@dataclass(slots=True)
class RealmDoc:
    """One realm file as data (what the commands edit and the merge feeds to rbac)."""

    realm: str
    users: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    #: role -> (VM names, operation names)
    roles: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)
    #: (kind "user"|"group", who, role)
    assigns: set[tuple[str, str, str]] = field(default_factory=set)
    lines: dict[str, int] = field(default_factory=dict)

    def to_xml(self) -> str:
        from xml.sax.saxutils import quoteattr as q

        out = [f"<RealmFile realm={q(self.realm)}>"]
        out += [f"  <Member user={q(u)}/>" for u in sorted(self.users)]
        out += [f"  <Member group={q(g)}/>" for g in sorted(self.groups)]
        for role, (vms, ops) in sorted(self.roles.items()):
            out.append(f"  <Role name={q(role)}>")
            out += [f"    <VM name={q(v)}/>" for v in sorted(vms)]
            out += [f"    <Operation name={q(o)}/>" for o in sorted(ops)]
            out.append("  </Role>")
        out += [f"  <Assign {k}={q(w)} role={q(r)}/>" for k, w, r in sorted(self.assigns)]
        out.append("</RealmFile>")
        return "\n".join(out) + "\n"


def policy_role(realm: str, role: str) -> str:
    return f"{realm}{ROLE_SEP}{role}"


def parse_doc(data: bytes, name: str, realm: str) -> RealmDoc:
    from rbac import xmlsafe
    from rbac.errors import PolicyError

    try:
        root = xmlsafe.parse(data, name, max_size=MAX_REALM_FILE_BYTES).getroot()
    except PolicyError as exc:
        raise RealmFileError(str(exc)) from None
    if root.tag != "RealmFile" or root.get("realm") != realm:
        raise RealmFileError(f'{name}:{root.sourceline}: expected <RealmFile realm="{realm}">')
    doc = RealmDoc(realm)
    for el in root.iterchildren(tag=etree.Element):
        where = f"{name}:{el.sourceline}"
        if el.tag == "Member":
            user, group = el.get("user"), el.get("group")
            if (user is None) == (group is None):
                raise RealmFileError(f"{where}: <Member> needs exactly one of user= or group=")
            (doc.users if user is not None else doc.groups).add(user or group)
        elif el.tag == "Role":
            role = el.get("name")
            if not role or ROLE_SEP in role or role in doc.roles:
                raise RealmFileError(f"{where}: bad or repeated role name {role!r}")
            vms, ops = set(), set()
            for c in el.iterchildren(tag=etree.Element):
                if c.tag == "VM" and c.get("name"):
                    vms.add(c.get("name"))
                elif c.tag == "Operation" and c.get("name"):
                    ops.add(c.get("name"))
                else:
                    raise RealmFileError(
                        f'{name}:{c.sourceline}: a realm role holds only <VM name="..."/> '
                        "and <Operation name=\"...\"/> (no patterns, no 'all')"
                    )
            doc.roles[role] = (vms, ops)
            doc.lines[role] = el.sourceline
        elif el.tag == "Assign":
            role, user, group = el.get("role"), el.get("user"), el.get("group")
            if not role or (user is None) == (group is None):
                raise RealmFileError(f"{where}: <Assign role=... user=|group=...>")
            doc.assigns.add(("user" if user is not None else "group", user or group, role))
        else:
            raise RealmFileError(f"{where}: unknown element <{el.tag}>")
    return doc


def check_doc(doc: RealmDoc, realms: RealmSet, catalogue) -> list[str]:
    """What makes ``doc`` reach outside its realm (load errors), as sentences."""
    realm: Realm | None = realms.get(doc.realm)
    if realm is None:
        return [f"realm '{doc.realm}' is not in the realms file"]
    errors = []
    allowed = realm.operations
    cat = catalogue.names if hasattr(catalogue, "names") else catalogue
    names = set(cat.values()) if isinstance(cat, Mapping) else set(cat)
    for role, (vms, ops) in sorted(doc.roles.items()):
        for vm in sorted(vms):
            others = [r for r in realms.claim(vm) if r != doc.realm]
            if others:
                errors.append(
                    f"realm '{doc.realm}' role '{role}' names VM '{vm}', which realm "
                    f"'{others[0]}' claims"
                )
        for op in sorted(ops):
            if op not in names:
                errors.append(f"role '{role}': operation '{op}' is not in the catalogue")
            elif allowed and op not in allowed:
                errors.append(
                    f"role '{role}': root does not allow realm '{doc.realm}' the operation '{op}'"
                )
    for _kind, _who, role in sorted(doc.assigns):
        if role not in doc.roles:
            errors.append(f"assignment of role '{role}', which realm '{doc.realm}' does not define")
    return errors


def feed(doc: RealmDoc, builder, source: str) -> None:
    """Add ``doc``'s roles, grants and assignments to an rbac PolicyBuilder."""
    from rbac.selectors import Exact

    for role, (vms, ops) in sorted(doc.roles.items()):
        name = policy_role(doc.realm, role)
        src = (source, doc.lines.get(role))
        builder.add_role(name, source=src)
        if vms and ops:
            builder.grant_lines(
                name, [(op, src) for op in sorted(ops)], Exact(sorted(vms)), source=src
            )
    for kind, who, role in sorted(doc.assigns):
        name = policy_role(doc.realm, role)
        if kind == "user":
            builder.assign(who, name, source=(source, None))
        else:
            builder.assign_group(who, name, source=(source, None))


class RealmFiles:
    """The realm files in ``state_dir``: reading with last-good fallback, and writing."""

    def __init__(self, state_dir: str, *, owner_uid: int = 0):
        self.dir = state_dir
        self.owner_uid = owner_uid
        #: realm -> the error that made its current file unusable (last load)
        self.errors: dict[str, str] = {}
        #: realm -> the document in force (last load)
        self.docs: dict[str, RealmDoc] = {}

    def path(self, realm: str, good: bool = False) -> str:
        return os.path.join(self.dir, f"{realm}{'.good' if good else ''}.xml")

    def read(self, realm: str, good: bool = False) -> bytes | None:
        from secured_virt.fsutil import read_trusted_file

        try:
            return read_trusted_file(
                self.path(realm, good), max_size=MAX_REALM_FILE_BYTES, owner_uid=self.owner_uid
            )
        except FileNotFoundError:
            return None

    def load_doc(self, realm: str, realms: RealmSet, catalogue, data: bytes | None = None):
        """The realm's document in force: its file if it is good, else its last good copy."""
        from secured_virt.fsutil import UnsafeFileError

        try:
            data = self.read(realm) if data is None else data
            if data is None:
                return RealmDoc(realm), None
            doc = parse_doc(data, self.path(realm), realm)
            errs = check_doc(doc, realms, catalogue)
            if errs:
                raise RealmFileError(f"{self.path(realm)}: " + "; ".join(errs))
            return doc, None
        except (RealmFileError, UnsafeFileError, OSError) as exc:
            why = str(exc)
        try:
            good = self.read(realm, good=True)
            if good is not None:
                doc = parse_doc(good, self.path(realm, True), realm)
                if not check_doc(doc, realms, catalogue):
                    return doc, f"{why}; its last good version is in force"
        except (RealmFileError, UnsafeFileError, OSError):
            pass
        return RealmDoc(realm), f"{why}; no good version: the realm's own roles grant nothing"

    def merge(self, builder, tenancy, catalogue) -> str:
        """rbac.load's ``extend``: every realm's document into ``builder``; also tells the
        tenancy which members the realm admins added.  Returns what went in, for the digest."""
        from rbac import PolicyBuilder, PolicyError

        errors: dict[str, str] = {}
        docs: dict[str, RealmDoc] = {}
        extra = {}
        digest = hashlib.sha256()
        for realm in sorted(tenancy.realms.realms):
            doc, err = self.load_doc(realm, tenancy.realms, catalogue)
            try:  # alone, the realm's own roles must make a valid policy
                trial = PolicyBuilder(catalogue)
                feed(doc, trial, self.path(realm))
                trial.model()
            except PolicyError as exc:
                err = f"{exc}; the realm's own roles grant nothing"
                doc = RealmDoc(realm)
            if err:
                errors[realm] = err
            docs[realm] = doc
            extra[realm] = (frozenset(doc.users), frozenset(doc.groups))
            feed(doc, builder, self.path(realm))
            digest.update(doc.to_xml().encode())
        self.errors, self.docs = errors, docs
        tenancy.extra = extra
        return digest.hexdigest() if docs else ""

    def write(self, doc: RealmDoc) -> None:
        """Install ``doc`` (already checked) atomically; the file it replaces becomes the
        last good copy."""
        from secured_virt.fsutil import atomic_write, ensure_secure_dir

        ensure_secure_dir(self.dir, 0o700, owner_uid=self.owner_uid)
        old = self.read(doc.realm)
        if old is not None:
            atomic_write(self.path(doc.realm, True), old, mode=0o600)
        atomic_write(self.path(doc.realm), doc.to_xml(), mode=0o600)

    def remove(self, realm: str) -> None:
        for good in (False, True):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(realm, good))
