"""Root's realms file: which tenants share this host, and what each may have.

Why one root-owned file (``/etc/secured-virt/realms.xml``, config key ``realms``): realms are
the range inside which realm admins act, so only root may draw them.  It is read like UA/PA
(trusted file: root-owned, not group/world-writable, every directory above it too), parsed
safely, validated against the schema below, then checked as a whole; every problem is
reported with ``file:line`` and any problem means the file is not used (the last good one
stays in a running svirtd).  A missing file means no realms: the implicit root realm, as
before.  Format::

    <Realms>
      <Realm name="acme">
        <Member user="alice"/>  <Member group="acme-staff"/>
        <Admin user="alice"/>   <Admin group="acme-admins"/>     (admins are members too)
        <Storage pool="acme" path="/var/lib/secured-virt/realms/acme"/>
        <VM name="acme-web"/>   <VM pattern="acme-*"/>           (claims; metadata decides)
        <Label name="dom_Acme"/>                                 (labels its VMs may carry)
        <Operation name="start"/> ...                            (none listed: every VM op)
        <Quota vms="10" vcpus="16" memory="8G" bytes="100G"/>
        <Svirt user="svirt-r-acme" uid="990" gid="990" category="17"/>  (realm setup writes it)
      </Realm>
    </Realms>

Bad input: a member user that does not exist is a warning (an account may come later, from a
directory); a group that cannot be resolved is a warning and grants nothing; two realms
claiming one VM (a name, or a name and a pattern), one pool, or overlapping storage
directories (one image would belong to both) are load errors naming both.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import re
from dataclasses import dataclass, field
from functools import cache

from lxml import etree

NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_REALMS_BYTES = 4 * 1024 * 1024

_XSD = b"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:simpleType name="Name">
    <xs:restriction base="xs:string">
      <xs:pattern value="[^\\s\\p{Z}\\p{C}]+"/>
      <xs:maxLength value="256"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="RealmName">
    <xs:restriction base="xs:string"><xs:pattern value="[a-z][a-z0-9_\\-]{0,31}"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="Size">
    <xs:restriction base="xs:string"><xs:pattern value="[0-9]+[KMGT]?"/></xs:restriction>
  </xs:simpleType>
  <xs:complexType name="Who">
    <xs:attribute name="user" type="Name"/>
    <xs:attribute name="group" type="Name"/>
  </xs:complexType>
  <xs:element name="Realms">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="Realm" minOccurs="0" maxOccurs="unbounded">
          <xs:complexType>
            <xs:choice minOccurs="0" maxOccurs="unbounded">
              <xs:element name="Member" type="Who"/>
              <xs:element name="Admin" type="Who"/>
              <xs:element name="Storage">
                <xs:complexType>
                  <xs:attribute name="pool" type="Name" use="required"/>
                  <xs:attribute name="path" type="xs:string" use="required"/>
                </xs:complexType>
              </xs:element>
              <xs:element name="VM">
                <xs:complexType>
                  <xs:attribute name="name" type="Name"/>
                  <xs:attribute name="pattern" type="Name"/>
                </xs:complexType>
              </xs:element>
              <xs:element name="Label">
                <xs:complexType>
                  <xs:attribute name="name" type="Name" use="required"/>
                </xs:complexType>
              </xs:element>
              <xs:element name="Operation">
                <xs:complexType>
                  <xs:attribute name="name" type="Name" use="required"/>
                </xs:complexType>
              </xs:element>
              <xs:element name="Svirt">
                <xs:complexType>
                  <xs:attribute name="user" type="Name"/>
                  <xs:attribute name="uid" type="xs:positiveInteger"/>
                  <xs:attribute name="gid" type="xs:positiveInteger"/>
                  <xs:attribute name="category" type="xs:nonNegativeInteger"/>
                  <xs:attribute name="created" type="xs:boolean"/>
                </xs:complexType>
              </xs:element>
              <xs:element name="Quota">
                <xs:complexType>
                  <xs:attribute name="vms" type="xs:nonNegativeInteger"/>
                  <xs:attribute name="vcpus" type="xs:nonNegativeInteger"/>
                  <xs:attribute name="memory" type="Size"/>
                  <xs:attribute name="bytes" type="Size"/>
                </xs:complexType>
              </xs:element>
            </xs:choice>
            <xs:attribute name="name" type="RealmName" use="required"/>
          </xs:complexType>
        </xs:element>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


class RealmsError(Exception):
    """The realms file cannot be used; the message lists every problem with file:line."""


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.fromstring(_XSD))


def parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    return int(text.rstrip("KMGT")) * mult


@dataclass(frozen=True, slots=True)
class Quota:
    vms: int | None = None
    vcpus: int | None = None
    memory: int | None = None  # bytes
    bytes: int | None = None

    def as_dict(self) -> dict:
        return {"vms": self.vms, "vcpus": self.vcpus, "memory": self.memory, "bytes": self.bytes}


@dataclass(frozen=True, slots=True)
class Realm:
    name: str
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    admin_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()
    pool: str | None = None
    path: str | None = None
    vm_names: frozenset[str] = frozenset()
    vm_patterns: tuple[str, ...] = ()
    labels: frozenset[str] = frozenset()
    #: operation names root allows this realm; empty: every VM operation, no host operation
    operations: frozenset[str] = frozenset()
    quota: Quota = field(default_factory=Quota)
    line: int | None = None
    #: sVirt made real (``<Svirt>``, written by ``svirt-admin realm create|setup``): the system
    #: user the realm's QEMU runs as, its ids as recorded, whether set-up created it, and the
    #: realm's own MCS category (its VMs get pairs (category, c_j))
    qemu_user: str | None = None
    qemu_uid: int | None = None
    qemu_gid: int | None = None
    qemu_user_created: bool = False
    category: int | None = None

    def claims(self, vm: str) -> bool:
        return vm in self.vm_names or any(fnmatch.fnmatchcase(vm, p) for p in self.vm_patterns)

    def holds_path(self, path: str) -> bool:
        if not self.path:
            return False
        p = os.path.normpath(path)
        return p == self.path or p.startswith(self.path.rstrip("/") + "/")

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "members": {"users": sorted(self.users), "groups": sorted(self.groups)},
            "admins": {"users": sorted(self.admin_users), "groups": sorted(self.admin_groups)},
            "storage": {"pool": self.pool, "path": self.path},
            "vms": {"names": sorted(self.vm_names), "patterns": list(self.vm_patterns)},
            "labels": sorted(self.labels),
            "operations": sorted(self.operations),
            "quota": self.quota.as_dict(),
            "svirt": {
                "user": self.qemu_user,
                "uid": self.qemu_uid,
                "gid": self.qemu_gid,
                "category": self.category,
            },
        }


@dataclass(slots=True)
class RealmSet:
    """The realms root declared; empty when there is no realms file (the root realm only)."""

    realms: dict[str, Realm] = field(default_factory=dict)
    source: str | None = None
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.realms)

    def get(self, name: str) -> Realm | None:
        return self.realms.get(name)

    def claim(self, vm: str) -> tuple[str, ...]:
        """Realms whose claims (names, patterns) cover ``vm``; more than one is a conflict."""
        return tuple(r.name for r in self.realms.values() if r.claims(vm))

    def realm_of_path(self, path: str) -> str | None:
        for r in self.realms.values():
            if r.holds_path(path):
                return r.name
        return None


def _err(errors: list[str], name: str, line, msg: str) -> None:
    errors.append(f"{name}:{line}: {msg}" if line else f"{name}: {msg}")


def parse_realms(data: bytes, name: str, operations=None) -> RealmSet:
    """Parse and check a realms document; RealmsError lists every problem (file:line)."""
    from rbac import xmlsafe
    from rbac.errors import PolicyError

    try:
        tree = xmlsafe.parse(data, name, max_size=MAX_REALMS_BYTES)
    except PolicyError as exc:
        raise RealmsError(str(exc)) from None
    schema = _schema()
    if not schema.validate(tree):
        msgs = [f"{name}:{e.line}: {e.message}" for e in schema.error_log]
        raise RealmsError("\n".join(msgs))
    errors: list[str] = []
    warnings: list[str] = []
    realms: dict[str, Realm] = {}
    from rbac.groups import RESOLVER

    known_ops = None
    if operations is not None:  # a catalogue's id -> name mapping, or the names themselves
        known_ops = set(operations.values()) if hasattr(operations, "values") else set(operations)
    for rel in tree.getroot().iterchildren("Realm"):
        rname = rel.get("name")
        if rname in realms:
            _err(errors, name, rel.sourceline, f"realm '{rname}' is defined twice")
            continue
        kw: dict = {k: set() for k in ("users", "groups", "admin_users", "admin_groups")}
        kw.update(vm_names=set(), labels=set(), operations=set())
        patterns: list[str] = []
        pool = path = None
        quota = Quota()
        svirt: dict = {}
        for el in rel.iterchildren(tag=etree.Element):
            line = el.sourceline
            if el.tag in ("Member", "Admin"):
                user, group = el.get("user"), el.get("group")
                if (user is None) == (group is None):
                    _err(errors, name, line, f"<{el.tag}> needs exactly one of user= or group=")
                    continue
                pre = "admin_" if el.tag == "Admin" else ""
                if user is not None:
                    kw[pre + "users"].add(user)
                    try:
                        pwd.getpwnam(user)
                    except KeyError:
                        _err(
                            warnings,
                            name,
                            line,
                            f"realm '{rname}': user '{user}' does not exist (yet); "
                            "kept as a member",
                        )
                else:
                    kw[pre + "groups"].add(group)
                    why = RESOLVER.why_unresolved(group)
                    if why is not None:
                        _err(
                            warnings,
                            name,
                            line,
                            f"realm '{rname}': group '{group}' cannot be resolved ({why}); "
                            "it makes nobody a member",
                        )
            elif el.tag == "Storage":
                if pool is not None:
                    _err(errors, name, line, f"realm '{rname}' has two <Storage> elements")
                    continue
                p = el.get("path")
                if not p.startswith("/") or ".." in p.split("/") or "\0" in p:
                    _err(errors, name, line, f"storage path '{p}' must be absolute, without ..")
                    continue
                pool, path = el.get("pool"), os.path.normpath(p)
            elif el.tag == "VM":
                n, pat = el.get("name"), el.get("pattern")
                if (n is None) == (pat is None):
                    _err(errors, name, line, "<VM> needs exactly one of name= or pattern=")
                elif n is not None:
                    kw["vm_names"].add(n)
                else:
                    patterns.append(pat)
            elif el.tag == "Label":
                kw["labels"].add(el.get("name"))
            elif el.tag == "Operation":
                op = el.get("name")
                if known_ops is not None and op not in known_ops:
                    _err(errors, name, line, f"operation '{op}' is not in the catalogue")
                kw["operations"].add(op)
            elif el.tag == "Svirt":
                if svirt:
                    _err(errors, name, line, f"realm '{rname}' has two <Svirt> elements")
                    continue
                svirt = _svirt_of(el, rname, name, line, errors)
            elif el.tag == "Quota":
                quota = Quota(
                    vms=int(el.get("vms")) if el.get("vms") is not None else None,
                    vcpus=int(el.get("vcpus")) if el.get("vcpus") is not None else None,
                    memory=parse_size(el.get("memory")),
                    bytes=parse_size(el.get("bytes")),
                )
        realms[rname] = Realm(
            rname,
            **{k: frozenset(v) for k, v in kw.items()},
            pool=pool,
            path=path,
            vm_patterns=tuple(patterns),
            quota=quota,
            line=rel.sourceline,
            **svirt,
        )
    _check_overlaps(realms, name, errors)
    if errors:
        raise RealmsError("\n".join(errors))
    return RealmSet(realms, name, tuple(warnings))


def _check_overlaps(realms: dict[str, Realm], name: str, errors: list[str]) -> None:
    """Nothing may belong to two realms: a VM, a pool, a storage directory."""
    items = sorted(realms.values(), key=lambda r: r.name)
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            both = f"realms '{a.name}' (line {a.line}) and '{b.name}' (line {b.line})"
            for vm in sorted(a.vm_names & b.vm_names):
                _err(errors, name, b.line, f"VM '{vm}' is claimed by both {both}")
            for x, y in ((a, b), (b, a)):
                for vm in sorted(x.vm_names):
                    hit = [p for p in y.vm_patterns if fnmatch.fnmatchcase(vm, p)]
                    if hit:
                        _err(
                            errors,
                            name,
                            b.line,
                            f"VM '{vm}' of realm '{x.name}' matches pattern '{hit[0]}' of "
                            f"realm '{y.name}': it is claimed by both {both}",
                        )
            for pat in sorted(set(a.vm_patterns) & set(b.vm_patterns)):
                _err(errors, name, b.line, f"VM pattern '{pat}' is claimed by both {both}")
            if a.pool and a.pool == b.pool:
                _err(errors, name, b.line, f"storage pool '{a.pool}' is claimed by both {both}")
            if a.path and b.path and (a.holds_path(b.path) or b.holds_path(a.path)):
                _err(
                    errors,
                    name,
                    b.line,
                    f"storage directories '{a.path}' and '{b.path}' overlap: an image there "
                    f"would belong to both {both}",
                )
            for lab in sorted(a.labels & b.labels):
                _err(errors, name, b.line, f"label '{lab}' is claimed by both {both}")
            for what, x, y in (
                ("QEMU user", a.qemu_user, b.qemu_user),
                ("QEMU uid", a.qemu_uid, b.qemu_uid),
                ("sVirt category", a.category, b.category),
            ):
                if x is not None and x == y:
                    _err(
                        errors,
                        name,
                        b.line,
                        f"{what} {x} is claimed by both {both}: each realm's guests need their "
                        "own (svirt-admin realm setup gives each realm its own)",
                    )


def _svirt_of(el, rname: str, name: str, line, errors: list[str]) -> dict:
    """``<Svirt user= uid= gid= category= created=>``: the realm's QEMU user as recorded.

    The user name must still resolve to the recorded uid and gid: a user deleted and its uid
    reused by someone else must not silently become the owner of the realm's images."""
    out: dict = {}
    user = el.get("user")
    uid, gid = el.get("uid"), el.get("gid")
    if (user is None) != (uid is None) or (uid is None) != (gid is None):
        _err(errors, name, line, f"realm '{rname}': <Svirt> needs user=, uid= and gid= together")
        return out
    if user is not None:
        out.update(qemu_user=user, qemu_uid=int(uid), qemu_gid=int(gid))
        out["qemu_user_created"] = el.get("created") in ("true", "1")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            pw = None
        if pw is None or (pw.pw_uid, pw.pw_gid) != (int(uid), int(gid)):
            now = f"is uid {pw.pw_uid}, gid {pw.pw_gid}" if pw else "does not exist"
            _err(
                errors,
                name,
                line,
                f"realm '{rname}': its QEMU user '{user}' was recorded as uid {uid}, gid {gid} "
                f"but {now}; run 'svirt-admin realm setup {rname}' (as root) to repair it",
            )
    cat = el.get("category")
    if cat is not None:
        if int(cat) > 1023:
            _err(errors, name, line, f"realm '{rname}': category c{cat} is not in c0..c1023")
        else:
            out["category"] = int(cat)
    return out


def load_realms(path: str | None, operations=None, *, owner_uid: int = 0) -> RealmSet:
    """The realms in ``path`` (trusted file); an empty RealmSet when the file does not exist."""
    if not path:
        return RealmSet()
    from secured_virt.fsutil import UnsafeFileError, check_ancestors, read_trusted_file

    try:
        check_ancestors(path, owner_uid=owner_uid, strict_parent=True)
        data = read_trusted_file(path, max_size=MAX_REALMS_BYTES, owner_uid=owner_uid)
    except FileNotFoundError:
        return RealmSet()
    except UnsafeFileError as exc:
        raise RealmsError(f"{exc}; the realms file is not trusted") from None
    except OSError as exc:
        raise RealmsError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_realms(data, path, operations)
