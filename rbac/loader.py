"""UA/PA files -> RbacPolicy.

The seed's two files load unchanged; the extensions (operation names, VM scopes, argument
constraints, inheritance, authentication, expiry, separation of duty) are optional elements
and attributes documented in etc/ua.xml, etc/pa.xml and etc/examples/README.md.  Every
problem is reported with its file and line, all at once, and any problem means no policy at
all (fail closed).
"""

from __future__ import annotations

import gc
import hashlib
import os

from lxml import etree

from . import xmlsafe
from .builder import PolicyBuilder
from .errors import PolicyError
from .model import as_catalogue, where
from .selectors import (
    AnyObject,
    ArgumentValues,
    Attribute,
    Exact,
    Glob,
    Owned,
    glob_problem,
)
from .trusted_file import read_trusted


def load(
    ua_path,
    pa_path,
    operations,
    *,
    owner_uid: int = 0,
    max_size: int | None = None,
    extend=None,
    groups=None,
):
    """Read UA and PA from trusted files (root-owned, not writable by others) and compile.

    Raises PolicyError (all problems of both files together) if anything is wrong.
    ``owner_uid`` is the owner the files must have; only tests running as non-root change it.
    ``extend(builder)``, if given, adds to the policy after both files were read (the caller's
    own additions, e.g. per-tenant files; rbac does not know what they are); it may return a
    text that identifies what it added (it goes into the digest).  ``groups``: the
    rbac.groups.GroupResolver for ``<Group>`` roles (default: the process-wide one).
    """
    limit = xmlsafe.MAX_POLICY_BYTES if max_size is None else max_size
    data: dict[str, bytes] = {}
    errors: list[PolicyError] = []
    for key, path in (("ua", ua_path), ("pa", pa_path)):
        try:
            data[key] = read_trusted(path, max_size=limit, owner_uid=owner_uid)
        except PolicyError as exc:
            errors.append(exc)
    if errors:
        raise PolicyError.collect(errors)
    return loads(
        data["ua"],
        data["pa"],
        operations,
        ua_name=os.fspath(ua_path),
        pa_name=os.fspath(pa_path),
        max_size=limit,
        extend=extend,
        groups=groups,
    )


def loads(
    ua_bytes: bytes,
    pa_bytes: bytes,
    operations,
    ua_name: str = "ua.xml",
    pa_name: str = "pa.xml",
    *,
    max_size: int = xmlsafe.MAX_POLICY_BYTES,
    extend=None,
    groups=None,
    native: bool = True,
):
    """Compile UA/PA documents given as bytes (no file checks: the caller vouches for them);
    ``extend`` as in :func:`load`."""
    ops = as_catalogue(operations)
    # Building a large policy allocates millions of objects and no cycles: the cyclic GC
    # would walk them all again and again (0.6 s of 1.9 s at 100k users).  Paused for the
    # build only, and restored as it was.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        b = PolicyBuilder(
            ops,
            ua_name=os.path.basename(ua_name) or ua_name,
            pa_name=os.path.basename(pa_name) or pa_name,
        )
        # one document tree at a time: PA's tree (the large one: a VM element per VM) is
        # read into the builder and dropped before UA is parsed, so the peak holds one tree.
        # Both files are still parsed and validated, and their problems reported together.
        errors: list[PolicyError] = []
        for kind, data, name in (("pa", pa_bytes, pa_name), ("ua", ua_bytes, ua_name)):
            try:
                if isinstance(data, str):
                    data = data.encode("utf-8")
                tree = xmlsafe.parse(data, name, max_size=max_size)
                xmlsafe.validate(tree, kind, name)
            except PolicyError as exc:
                errors.append(exc)
                continue
            if not errors:
                (read_pa if kind == "pa" else read_ua)(tree, name, b)
            del tree
        if errors:
            raise PolicyError.collect(errors)
        digest = policy_digest(ua_bytes, pa_bytes)
        if extend is not None:
            extra = extend(b)
            if extra:  # what the additions are made of changes the digest too
                digest = hashlib.sha256(digest.encode() + b"\0" + extra.encode()).hexdigest()
        b.set_digest(digest)
        return b.build(native=native, groups=groups)
    finally:
        if gc_was_on:
            gc.enable()


def policy_digest(ua_bytes: bytes, pa_bytes: bytes) -> str:
    """sha256 hex of UA bytes, a NUL (which XML text cannot contain), then PA bytes."""
    if isinstance(ua_bytes, str):
        ua_bytes = ua_bytes.encode("utf-8")
    if isinstance(pa_bytes, str):
        pa_bytes = pa_bytes.encode("utf-8")
    h = hashlib.sha256(ua_bytes)  # fed in parts: no 11 MB concatenation at 100k users
    h.update(b"\0")
    h.update(pa_bytes)
    return h.hexdigest()


def _elements(parent):
    """Child elements, skipping comments (the schema has already vetted the tags)."""
    return parent.iterchildren(tag=etree.Element)


# -- PA ----------------------------------------------------------------------------------------
def read_pa(tree, name: str, b: PolicyBuilder) -> None:
    for role_el in _elements(tree.getroot()):
        role = role_el.get("name")
        # xs:boolean: "true"/"1" (the schema allows surrounding white space)
        auth = role_el.get("authenticate", "false").strip() in ("true", "1")
        b.add_role(role, authenticate=auth, source=(name, role_el.sourceline))
        scopes: list[tuple[object, int]] = []
        last = None
        for el in _elements(role_el):
            src = (name, el.sourceline)
            if el.tag == "Inherits":
                b.inherit(role, el.get("role"), source=src)
            elif el.tag == "ManageVM":
                if last == "ControlOperation":
                    scopes = []  # a ManageVM after operations starts the next grant
                scopes.extend((sel, el.sourceline) for sel in _selectors(el, name, b))
            elif el.tag == "ControlOperation":
                ops = [
                    (tok, (name, op.sourceline), _op_values(op, name, b))
                    for op in el.iter("operation")
                    if (tok := _op_token(op, name, b)) is not None
                ]
                for sel, line in scopes:
                    b.grant_lines(role, ops, sel, source=(name, line))
            last = el.tag


def _op_token(op, name: str, b: PolicyBuilder):
    ident, label = op.get("id"), op.get("name")
    if (ident is None) == (label is None):
        b.error(
            '<operation> needs exactly one of id="..." or name="..." '
            f"(got {'both' if ident is not None else 'neither'})",
            (name, op.sourceline),
        )
        return None
    if label is not None and label.strip().isascii() and label.strip().isdigit():
        b.error(
            f'<operation name="{label}"> gives an id as a name; write id="{label.strip()}"',
            (name, op.sourceline),
        )
        return None
    return ident if ident is not None else label


def _op_values(op, name: str, b: PolicyBuilder) -> ArgumentValues | None:
    """The argument constraint an <operation> lists (its <Label> children), or None."""
    items = [c for c in _elements(op) if c.tag == "Label"]
    if not items:
        return None
    names: list[str] = []
    patterns: list[str] = []
    for it in items:
        src = (name, it.sourceline)
        value, pattern = it.get("name"), it.get("pattern")
        if (value is None) == (pattern is None):
            b.error(
                '<Label> in an <operation> needs exactly one of name="..." or pattern="..." '
                f"(got {'both' if value is not None else 'neither'})",
                src,
            )
        elif pattern is not None and (why := glob_problem(pattern)) is not None:
            b.error(f"<Label pattern='{pattern}'> {why}", src)
        elif pattern is not None:
            patterns.append(pattern)
        else:
            names.append(value)
    return ArgumentValues(frozenset(names), tuple(patterns))


def _selectors(el, name: str, b: PolicyBuilder):
    kind = el.get("type")
    vms = []
    labels = []
    for c in _elements(el):  # one pass: a 100k-VM PA file has 100k <VM> children
        (vms if c.tag == "VM" else labels).append(c)

    def refuse(what: str, line=None):
        b.error(f'ManageVM type="{kind}" {what}', (name, line or el.sourceline))

    if kind in ("all", "owned"):
        if vms or labels:
            refuse(
                "takes no <VM> or <Label> children (it covers "
                + ("every VM)" if kind == "all" else "the VMs the user asking owns)"),
                (vms or labels)[0].sourceline,
            )
            return []
        return [AnyObject() if kind == "all" else Owned()]
    if kind == "label":
        if vms:
            refuse('takes <Label name="..."/> children, not <VM>', vms[0].sourceline)
        if not labels:
            refuse('needs at least one <Label name="..."/>')
        return [Attribute("label", lb.get("name")) for lb in labels]
    # individual / pattern: <VM name> or <VM pattern>
    attr, other = ("name", "pattern") if kind == "individual" else ("pattern", "name")
    if labels:
        refuse(f'takes <VM {attr}="..."/> children, not <Label>', labels[0].sourceline)
    good = []
    for vm in vms:
        value = vm.get(attr)
        if vm.get(other) is not None:
            hint = "pattern" if other == "pattern" else "individual"
            refuse(
                f'takes <VM {attr}="..."/>, not {other}= (for {other}s use type="{hint}")',
                vm.sourceline,
            )
        elif value is None:
            refuse(f'needs <VM {attr}="..."/>: this <VM> has no {attr}', vm.sourceline)
        elif kind == "pattern" and (why := glob_problem(value)) is not None:
            refuse(f"pattern '{value}' {why}", vm.sourceline)
        else:
            good.append(value)
    if not vms:
        refuse(f'needs at least one <VM {attr}="..."/>')
        return []
    if kind == "individual":
        return [Exact(good)] if good else []
    return [Glob(p) for p in good]


# -- UA ----------------------------------------------------------------------------------------
#: the elements read_ua walks, in document order; each <UserRole> belongs to the <User> or
#: <Group> last seen (the schema has them only there), a set's <Role>s are read with the set
_UA_TAGS = ("User", "Group", "UserRole", "StaticSeparation", "DynamicSeparation")


def read_ua(tree, name: str, b: PolicyBuilder) -> None:
    """UA's users, groups and sets into ``b``: one walk over the tree (a 100k-user file is
    233k elements; a walk per <User> cost twice as much), users and their assignments handed
    to the builder in one call.  Duplicates are reported as add_user/add_group would."""
    users: dict[str, tuple[str, int]] = {}
    assigns: list[tuple[str, str, str | None, tuple[str, int]]] = []
    append = assigns.append
    owner = None  # the user whose <UserRole>s follow; None: skipped (a duplicate) or a group
    # each role name as PA's string object: 133k <UserRole>s share 1k strings instead of
    # bringing 133k copies, and every later lookup by them finds their hash cached
    same = {r: r for r in b.role_names()}.get
    group = None  # the group whose <UserRole>s follow
    for el in tree.getroot().iter(*_UA_TAGS):
        tag = el.tag
        if tag == "UserRole":
            if owner is not None:
                # role= is required and expires= the only other attribute (the schema allows
                # no more): one value is the role, read in one call instead of two
                values = el.values()
                if len(values) == 1:
                    role = values[0]
                    append((owner, same(role, role), None, (name, el.sourceline)))
                else:
                    role = el.get("role")
                    expires = el.get("expires")
                    append((owner, same(role, role), expires, (name, el.sourceline)))
            elif group is not None:
                b.assign_group(
                    group, el.get("role"), expires=el.get("expires"), source=(name, el.sourceline)
                )
        elif tag == "User":
            owner = el.get("name")
            group = None
            if owner in users:
                b.error(
                    f"user '{owner}' is defined twice (first at {where(users[owner])}); "
                    "list all of a user's roles in one <User> element",
                    (name, el.sourceline),
                )
                owner = None  # its roles would only add noise
            else:
                users[owner] = (name, el.sourceline)
        elif tag == "Group":
            owner = None
            group = el.get("name")
            if not b.add_group(group, source=(name, el.sourceline)):
                group = None
        else:
            owner = group = None
            members = list(_elements(el))
            add = b.add_ssd if tag == "StaticSeparation" else b.add_dsd
            add(
                el.get("name"),
                [r.get("name") for r in members],
                el.get("cardinality", "2"),
                source=(name, el.sourceline),
                role_sources=[(name, r.sourceline) for r in members],
            )
    b._add_users(users, assigns)  # every assignment's user is in users
