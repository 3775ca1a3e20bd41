"""Edits of the UA/PA files at the XML level that keep root's comments and layout.

The scriptable commands of ``svirt-admin`` (``assign``, ``deassign``, ``grant``, ``revoke``,
``add-role``, ``rm-role``) change the files root also edits by hand, so they must not reformat
them: comments (``<operation id="6"/>  <!-- start -->``), blank lines, indentation and the XML
declaration all survive; only the elements an edit touches change, and new elements are
indented like their siblings.  Whether the result is a *valid* policy is not decided here: the
caller validates the whole policy (both files) with ``rbac.loads`` and shows the impact before
anything is installed.  Functions here raise :class:`EditError` only for requests that make no
sense on the document as it is (revoking what is not granted, adding a role that exists).

Scope syntax (``grant``/``revoke``), mapped onto ``<ManageVM type=...>``:

==================  ============================================================
``vm:NAME``         ``type="individual"``, ``<VM name="NAME"/>``
``pattern:GLOB``    ``type="pattern"``, ``<VM pattern="GLOB"/>`` (shell glob, case-sensitive)
``label:LABEL``     ``type="label"``, ``<Label name="LABEL"/>`` (the VM's sHype label)
``all``             ``type="all"``: every VM
``owned``           ``type="owned"``: the VMs the user asking owns
``host``            ``vm:<host_object>`` (``Domain-0`` unless configured otherwise)
==================  ============================================================

Parsing is rbac's safe parser (no entities, no DTD, no network, size limit).
"""

from __future__ import annotations

from lxml import etree

from rbac import xmlsafe
from secured_virt.access.operations import CATALOGUE

from .impact import Scope

__all__ = [
    "ALL_OPERATIONS",
    "EditError",
    "OpToken",
    "PolicyDoc",
    "add_role",
    "assign",
    "deassign",
    "grant",
    "parse_op",
    "parse_scope",
    "revoke",
    "rm_role",
    "roles_differing",
]

#: an operation token standing for every operation of the catalogue
ALL_OPERATIONS = "*"

_SKELETON = {
    "ua": b'<?xml version="1.0" encoding="UTF-8"?>\n<UserConfiguration>\n</UserConfiguration>\n',
    "pa": b'<?xml version="1.0" encoding="UTF-8"?>\n<RolePolicyDefinition>\n'
    b"</RolePolicyDefinition>\n",
}
_ROOT_TAG = {"ua": "UserConfiguration", "pa": "RolePolicyDefinition"}


class EditError(Exception):
    """The requested edit does not apply to the document (nothing was changed)."""


# -- command-line tokens ----------------------------------------------------------------------
_SCOPE_KINDS = ("vm", "pattern", "label")


def parse_scope(text: str, host_object: str = "Domain-0") -> Scope:
    """``vm:NAME``, ``pattern:GLOB``, ``label:LABEL``, ``all``, ``owned`` or ``host``."""
    if text in ("all", "owned"):
        return Scope(text)
    if text == "host":
        return Scope("vm", host_object)
    kind, sep, value = text.partition(":")
    if not sep or kind not in _SCOPE_KINDS:
        raise ValueError(
            f"bad VM scope {text!r}: use vm:NAME, pattern:GLOB, label:LABEL, all, owned or host"
        )
    if not value or value != value.strip() or any(ord(c) < 32 for c in value):
        raise ValueError(
            f"bad VM scope {text!r}: the {kind} after '{kind}:' must be non-empty, without "
            "leading or trailing white space or control characters"
        )
    return Scope(kind, value)


class OpToken:
    """An operation as root typed it: an id (written ``id="6"``), a name (``name="start"``) or
    ``*`` (every operation).  The file keeps the form root used."""

    __slots__ = ("attr", "id", "value")

    def __init__(self, attr: str, value: str, op_id: int | None):
        self.attr, self.value, self.id = attr, value, op_id

    @property
    def is_all(self) -> bool:
        return self.value == ALL_OPERATIONS

    def text(self) -> str:
        if self.is_all:
            return "every operation"
        return CATALOGUE.names.get(self.id, self.value)


def parse_op(token: str) -> OpToken:
    """Resolve an operation id, name or ``*``; ValueError (with the catalogue hint) if unknown."""
    if token in (ALL_OPERATIONS, "all"):
        return OpToken("id", ALL_OPERATIONS, None)
    try:
        op = CATALOGUE.get(token)
    except KeyError as exc:
        import difflib

        close = difflib.get_close_matches(token, list(CATALOGUE.by_name), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(exc.args[0] + hint) from None
    if token.isascii() and token.isdigit():
        return OpToken("id", str(op.id), op.id)
    return OpToken("name", op.name, op.id)


# -- the document -----------------------------------------------------------------------------
def _prolog_end(data: bytes) -> int:
    """Offset of the root element's '<': everything before it is kept byte for byte."""
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while True:
        while pos < len(data) and data[pos : pos + 1] in b" \t\r\n":
            pos += 1
        if data.startswith(b"<?", pos):
            pos = data.index(b"?>", pos) + 2
        elif data.startswith(b"<!--", pos):
            pos = data.index(b"-->", pos) + 3
        else:
            return pos


class PolicyDoc:
    """One parsed UA or PA file that can be edited and written back with its layout."""

    def __init__(self, data: bytes, kind: str, name: str):
        if kind not in _ROOT_TAG:
            raise ValueError(f"kind must be 'ua' or 'pa', not {kind!r}")
        self.kind, self.name, self.original = kind, name, data
        # safe parse (raises rbac.PolicyError), keeping the layout the file is written back with
        self.tree = xmlsafe.parse(data, name, keep_layout=True)
        self.root = self.tree.getroot()
        if self.root.tag != _ROOT_TAG[kind]:
            raise EditError(
                f"{name}: the root element is <{self.root.tag}>, but a {kind.upper()} file "
                f"has <{_ROOT_TAG[kind]}>"
            )
        self.encoding = self.tree.docinfo.encoding or "UTF-8"
        self.unit = self._detect_unit()

    @classmethod
    def skeleton(cls, kind: str, name: str) -> PolicyDoc:
        return cls(_SKELETON[kind], kind, name)

    def _detect_unit(self) -> str:
        """The indentation step of the file: the first child's indent (two spaces if none)."""
        text = self.root.text or ""
        if "\n" in text:
            unit = text.rsplit("\n", 1)[1]
            if unit and not unit.strip():
                return unit
        return "  "

    def to_bytes(self) -> bytes:
        data = self.original
        try:
            start = _prolog_end(data)
            ascii_compatible = data[start : start + 1] == b"<"
        except ValueError:
            ascii_compatible = False
        if not ascii_compatible:  # e.g. UTF-16: no byte-level surgery, serialise everything
            return etree.tostring(self.tree, encoding=self.encoding, xml_declaration=True)
        body = etree.tostring(
            self.root, encoding=self.encoding, xml_declaration=False, with_tail=False
        )
        tail = b"".join(
            b"\n" + etree.tostring(n, encoding=self.encoding, with_tail=False)
            for n in self.root.itersiblings()
        )
        end = b"\n" if data.endswith(b"\n") else b""
        return data[:start] + body + tail + end

    # -- lookups ------------------------------------------------------------------------------
    def elements(self, parent=None, tag: str | None = None):
        parent = self.root if parent is None else parent
        return [c for c in parent.iterchildren(tag=etree.Element) if tag in (None, c.tag)]

    def named(self, tag: str, name: str, parent=None):
        return next((e for e in self.elements(parent, tag) if e.get("name") == name), None)

    # -- layout-keeping tree surgery ----------------------------------------------------------
    def _own_indent(self, el) -> str:
        prev = el.getprevious()
        ws = (
            prev.tail
            if prev is not None
            else (el.getparent().text if el.getparent() is not None else "")
        )
        ws = ws or ""
        return ws.rsplit("\n", 1)[1] if "\n" in ws else ""

    def _child_indent(self, parent) -> str:
        kids = list(parent)
        if kids:
            return self._own_indent(kids[0])
        return self._own_indent(parent) + self.unit

    def insert(self, parent, new, index: int | None = None):
        """Insert ``new`` (and indent its subtree) among ``parent``'s children at ``index``
        (default: at the end), with the whitespace its siblings have."""
        kids = list(parent)
        if not kids:
            own = self._own_indent(parent)
            parent.text = "\n" + own + self.unit
            new.tail = "\n" + own
            parent.append(new)
        else:
            sep = "\n" + self._child_indent(parent)
            if index is None or index >= len(kids):
                last = kids[-1]
                new.tail, last.tail = last.tail, sep
                parent.append(new)
            else:
                new.tail = sep
                parent.insert(index, new)
        self._indent_subtree(new, self._own_indent(new))
        return new

    def insert_after(self, ref, new):
        parent = ref.getparent()
        return self.insert(parent, new, parent.index(ref) + 1)

    def _indent_subtree(self, el, indent: str) -> None:
        kids = list(el)
        if not kids:
            return
        inner = indent + self.unit
        el.text = "\n" + inner
        for i, kid in enumerate(kids):
            kid.tail = "\n" + (inner if i < len(kids) - 1 else indent)
            self._indent_subtree(kid, inner)

    def remove(self, el) -> None:
        """Remove ``el`` with the whitespace that went with it, and a comment that follows it
        on the same line (``<operation id="6"/>   <!-- start -->``)."""
        nxt = el.getnext()
        if isinstance(nxt, etree._Comment) and "\n" not in (el.tail or ""):
            el.tail = nxt.tail
            nxt.getparent().remove(nxt)
        parent, prev = el.getparent(), el.getprevious()
        if el.getnext() is None:  # the last child's tail is the parent's closing whitespace
            if prev is not None:
                prev.tail = el.tail
            else:
                parent.text = None
        parent.remove(el)


def _new(tag: str, **attrs) -> etree._Element:
    el = etree.Element(tag)
    for k, v in attrs.items():
        if v is not None:
            el.set(k, v)
    return el


def _where(doc: PolicyDoc, el) -> str:
    return f"{doc.name}:{el.sourceline}" if el.sourceline else doc.name


def _names(els) -> str:
    return ", ".join(e.get("name") or e.get("role") or "?" for e in els) or "none"


def _shape(el):
    """An element without comments and layout: what the loader reads from it."""
    kids = tuple(_shape(c) for c in el.iterchildren(tag=etree.Element))
    return (el.tag, tuple(sorted(el.attrib.items())), kids)


def roles_differing(old_pa: bytes | None, new_pa: bytes | None) -> set[str] | None:
    """Names of the roles whose <Role> element differs between two PA documents, ignoring
    comments and layout; None when either cannot be parsed (then compare everything)."""
    shapes = []
    for data in (old_pa, new_pa):
        if data is None:
            shapes.append({})
            continue
        try:
            root = xmlsafe.parse(data, "pa.xml").getroot()
        except Exception:
            return None
        by_name: dict[str, list] = {}
        for el in root.iterchildren(tag="Role"):
            by_name.setdefault(el.get("name"), []).append(_shape(el))
        shapes.append(by_name)
    old, new = shapes
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


# -- UA edits ---------------------------------------------------------------------------------
def assign(ua: PolicyDoc, user: str, role: str, expires: str | None = None) -> str:
    """Make ``user`` hold ``role`` (until ``expires``, or without expiry when None)."""
    user_el = ua.named("User", user)
    if user_el is None:
        user_el = _new("User", name=user)
        users = ua.elements(tag="User")
        if users:
            ua.insert_after(users[-1], user_el)
        else:
            ua.insert(ua.root, user_el, 0)
    for ur in ua.elements(user_el, "UserRole"):
        if ur.get("role") == role:
            if ur.get("expires") == expires:
                return f"{user} already holds role {role}"
            if expires is None:
                del ur.attrib["expires"]
                return f"assignment of role {role} to {user} no longer expires"
            ur.set("expires", expires)
            return f"assignment of role {role} to {user} now expires {expires}"
    ua.insert(user_el, _new("UserRole", role=role, expires=expires))
    return f"assigned role {role} to {user}" + (f" until {expires}" if expires else "")


def deassign(ua: PolicyDoc, user: str, role: str) -> str:
    user_el = ua.named("User", user)
    if user_el is None:
        raise EditError(f"user '{user}' is not in {ua.name}")
    held = ua.elements(user_el, "UserRole")
    mine = [ur for ur in held if ur.get("role") == role]
    if not mine:
        raise EditError(
            f"user '{user}' does not hold role '{role}' in {ua.name} "
            f"(assigned roles: {_names(held)})"
        )
    for ur in mine:
        ua.remove(ur)
    if not ua.elements(user_el):  # a user without roles is the same as no user at all
        ua.remove(user_el)
        return f"removed role {role} from {user} (and {user}, who holds no other role)"
    return f"removed role {role} from {user}"


# -- PA structure -----------------------------------------------------------------------------
class _Block:
    """One grant as the loader sees it: ManageVM elements followed by ControlOperations."""

    def __init__(self):
        self.manage: list = []
        self.control: list = []

    def scopes(self) -> list[tuple[Scope, object]]:
        """(scope, the element that names it) for every VM/pattern/label/all/owned."""
        out = []
        for mv in self.manage:
            kind = mv.get("type")
            if kind in ("all", "owned"):
                out.append((Scope(kind), mv))
                continue
            for child in mv.iterchildren(tag=etree.Element):
                if kind == "individual" and child.tag == "VM" and child.get("name"):
                    out.append((Scope("vm", child.get("name")), child))
                elif kind == "pattern" and child.tag == "VM" and child.get("pattern"):
                    out.append((Scope("pattern", child.get("pattern")), child))
                elif kind == "label" and child.tag == "Label":
                    out.append((Scope("label", child.get("name")), child))
        return out

    def operations(self) -> list[tuple[int | str | None, object]]:
        """(operation id, or '*', or None when unknown; the <operation> element)."""
        out = []
        for co in self.control:
            for op in co.iter("operation"):
                token = op.get("id") if op.get("id") is not None else op.get("name")
                if token == ALL_OPERATIONS:
                    out.append((ALL_OPERATIONS, op))
                    continue
                try:
                    out.append((CATALOGUE.get(token or "").id, op))
                except KeyError:
                    out.append((None, op))
        return out

    def grants(self, op_id: int) -> bool:
        return any(o in (op_id, ALL_OPERATIONS) for o, _ in self.operations())

    def last(self):
        return (self.control or self.manage)[-1]


def _blocks(pa: PolicyDoc, role_el) -> list[_Block]:
    blocks: list[_Block] = []
    cur, last = None, None
    for el in pa.elements(role_el):
        if el.tag == "ManageVM":
            if cur is None or last == "ControlOperation":
                cur = _Block()
                blocks.append(cur)
            cur.manage.append(el)
        elif el.tag == "ControlOperation" and cur is not None:
            cur.control.append(el)
        last = el.tag
    return blocks


def _role(pa: PolicyDoc, role: str):
    el = pa.named("Role", role)
    if el is None:
        import difflib

        names = [r.get("name") for r in pa.elements(tag="Role")]
        close = difflib.get_close_matches(role, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (roles: {', '.join(names)})"
        raise EditError(f"role '{role}' is not defined in {pa.name}{hint}")
    return el


def _manage_elements(scopes: list[Scope]) -> list:
    """<ManageVM> elements covering ``scopes`` (one per type, several VMs in one element)."""
    out = []
    by_kind: dict[str, list[Scope]] = {}
    for sc in scopes:
        by_kind.setdefault(sc.kind, []).append(sc)
    for kind, group in by_kind.items():
        if kind in ("all", "owned"):
            out.append(_new("ManageVM", type=kind))
            continue
        mv = _new("ManageVM", type={"vm": "individual"}.get(kind, kind))
        for sc in group:
            if kind == "vm":
                mv.append(_new("VM", name=sc.value))
            elif kind == "pattern":
                mv.append(_new("VM", pattern=sc.value))
            else:
                mv.append(_new("Label", name=sc.value))
        out.append(mv)
    return out


def _control(op_attrs: list[tuple[str, str]]):
    co = _new("ControlOperation")
    acc = etree.SubElement(co, "Accept")
    for attr, value in op_attrs:
        acc.append(_new("operation", **{attr: value}))
    return co


def _add_block(
    pa: PolicyDoc, role_el, after, scopes: list[Scope], op_attrs, *, at_start: bool = False
) -> None:
    """Insert a new grant (scopes x operations) after element ``after``; with ``after`` None,
    at the start of the role (``at_start``) or at its end."""
    new = [*_manage_elements(scopes), _control(op_attrs)]
    for el in new:
        if after is not None:
            pa.insert_after(after, el)
        else:
            pa.insert(role_el, el, 0 if at_start else None)
        after = el


# -- PA edits ---------------------------------------------------------------------------------
def grant(pa: PolicyDoc, role: str, op: OpToken, scope: Scope) -> str:
    """Let ``role`` perform ``op`` on ``scope``: added to a grant that names exactly this scope,
    or as a new grant at the end of the role."""
    role_el = _role(pa, role)
    what = f"{op.text()} on {scope.text()}"
    blocks = _blocks(pa, role_el)
    for b in blocks:
        if scope in [s for s, _ in b.scopes()]:
            ops = [o for o, _ in b.operations()]
            if ALL_OPERATIONS in ops or (not op.is_all and op.id in ops):
                return f"role {role} already has {what}"
    exact = [b for b in blocks if [s for s, _ in b.scopes()] == [scope]]
    if exact:
        b = exact[-1]
        accepts = list(b.control[-1].iter("Accept"))
        pa.insert(accepts[-1], _new("operation", **{op.attr: op.value}))
    else:
        elems = pa.elements(role_el)
        _add_block(pa, role_el, elems[-1] if elems else None, [scope], [(op.attr, op.value)])
    return f"granted {what} to role {role}"


def _expand_all(pa: PolicyDoc, block: _Block) -> None:
    """Replace ``<operation id="*"/>`` by the explicit catalogue ids it stands for today."""
    listed = {o for o, _ in block.operations() if isinstance(o, int)}
    for o, el in block.operations():
        if o != ALL_OPERATIONS:
            continue
        parent, ref = el.getparent(), el
        for op in CATALOGUE:
            if op.id not in listed:
                ref = pa.insert(parent, _new("operation", id=str(op.id)), parent.index(ref) + 1)
                listed.add(op.id)
        pa.remove(el)


def _prune(pa: PolicyDoc, block: _Block) -> bool:
    """Drop empty Accept/ControlOperation elements; True when the block lost all operations."""
    for co in list(block.control):
        for acc in list(co.iter("Accept")):
            if not list(acc.iter("operation")):
                pa.remove(acc)
        if not list(co.iter("Accept")):
            pa.remove(co)
            block.control.remove(co)
    return not block.control


def _drop_block(pa: PolicyDoc, block: _Block) -> None:
    for el in (*block.manage, *block.control):
        pa.remove(el)


def _remove_scope(pa: PolicyDoc, block: _Block, scope: Scope) -> None:
    """Take ``scope`` out of the block's ManageVM elements (the whole block if it was all)."""
    for sc, el in block.scopes():
        if sc != scope:
            continue
        if el.tag == "ManageVM":
            pa.remove(el)
            block.manage.remove(el)
        else:
            mv = el.getparent()
            pa.remove(el)
            if not list(mv.iterchildren(tag=etree.Element)):
                pa.remove(mv)
                block.manage.remove(mv)
    if not block.manage:
        _drop_block(pa, block)


def revoke(pa: PolicyDoc, role: str, op: OpToken, scope: Scope) -> str:
    """Take ``op`` on ``scope`` away from ``role``'s own grants.

    Only grants that name exactly this scope are changed: a pattern or label grant that also
    covers the VM is a different grant (revoke that scope instead), and a permission inherited
    from a junior role belongs to that role.  When a grant names several scopes, the others
    keep the operation (the grant is split).  ``*`` removes the scope from the role entirely.
    """
    role_el = _role(pa, role)
    what = f"{op.text()} on {scope.text()}"
    hits = [
        b
        for b in _blocks(pa, role_el)
        if scope in [s for s, _ in b.scopes()] and (op.is_all or b.grants(op.id))
    ]
    if not hits:
        raise EditError(f"role {role} has no grant of {what} in {pa.name}")
    for b in hits:
        if op.is_all:
            _remove_scope(pa, b, scope)
            continue
        if any(o == ALL_OPERATIONS for o, _ in b.operations()):
            _expand_all(pa, b)
        removed = [el for o, el in b.operations() if o == op.id]
        attr = next(iter(removed[0].attrib.items()), ("id", str(op.id)))
        others = [s for s, _ in b.scopes() if s != scope]
        before = _previous_element(b.manage[0])
        for el in removed:
            pa.remove(el)
        if _prune(pa, b):
            _drop_block(pa, b)
            after = before
        else:
            after = b.last()
        if others:  # the block's other scopes keep the operation: a grant of their own
            _add_block(pa, role_el, after, others, [attr], at_start=after is None)
    return f"revoked {what} from role {role}"


def _previous_element(el):
    prev = el.getprevious()
    while prev is not None and not isinstance(prev.tag, str):
        prev = prev.getprevious()
    return prev


def add_role(
    pa: PolicyDoc, role: str, inherits: list[str] | None = None, authenticate: bool = False
) -> str:
    if pa.named("Role", role) is not None:
        raise EditError(f"role '{role}' is already defined in {pa.name}")
    el = _new("Role", name=role, authenticate="true" if authenticate else None)
    for junior in inherits or ():
        el.append(_new("Inherits", role=junior))
    roles = pa.elements(tag="Role")
    if roles:
        pa.insert_after(roles[-1], el)
    else:
        pa.insert(pa.root, el)
    extra = f", inheriting {', '.join(inherits)}" if inherits else ""
    return f"added role {role}{extra}" + (" (requires authentication)" if authenticate else "")


def role_references(pa: PolicyDoc, ua: PolicyDoc, role: str) -> dict[str, list[str]]:
    """Who still refers to ``role``: users holding it, roles inheriting it, separation sets."""
    users = [
        u.get("name")
        for u in ua.elements(tag="User")
        if any(ur.get("role") == role for ur in ua.elements(u, "UserRole"))
    ]
    seniors = [
        r.get("name")
        for r in pa.elements(tag="Role")
        if any(i.get("role") == role for i in pa.elements(r, "Inherits"))
    ]
    sets = [
        f"{'static' if s.tag == 'StaticSeparation' else 'dynamic'} separation set '{s.get('name')}'"
        for s in ua.elements()
        if s.tag != "User" and any(r.get("name") == role for r in ua.elements(s, "Role"))
    ]
    return {"users": users, "inherited_by": seniors, "sets": sets}


def rm_role(pa: PolicyDoc, ua: PolicyDoc, role: str, force: bool = False) -> str:
    """Remove ``role``; refuse while anything refers to it, unless ``force`` (which removes the
    assignments, the inheritance and the role's place in separation sets too)."""
    role_el = _role(pa, role)
    refs = role_references(pa, ua, role)
    parts = []
    if refs["users"]:
        parts.append(f"assigned to {', '.join(refs['users'])}")
    if refs["inherited_by"]:
        parts.append(f"inherited by {', '.join(refs['inherited_by'])}")
    if refs["sets"]:
        parts.append(f"named in {', '.join(refs['sets'])}")
    if parts and not force:
        raise EditError(
            f"role '{role}' is still {'; '.join(parts)}.  Use --force to remove those "
            "references as well (the impact is shown before anything is installed)"
        )
    for u in ua.elements(tag="User"):
        for ur in ua.elements(u, "UserRole"):
            if ur.get("role") == role:
                ua.remove(ur)
        if not ua.elements(u):
            ua.remove(u)
    for r in pa.elements(tag="Role"):
        for inh in pa.elements(r, "Inherits"):
            if inh.get("role") == role:
                pa.remove(inh)
    for s in [s for s in ua.elements() if s.tag != "User"]:
        members = ua.elements(s, "Role")
        mine = [m for m in members if m.get("name") == role]
        if not mine:
            continue
        left = len(members) - len(mine)
        text = (s.get("cardinality") or "2").strip()
        card = int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 2
        if left < 2 or left < card:  # "fewer than n of fewer than n roles" constrains nothing
            ua.remove(s)
        else:
            for m in mine:
                ua.remove(m)
    pa.remove(role_el)
    return f"removed role {role}" + (f" (it was {'; '.join(parts)})" if parts else "")
