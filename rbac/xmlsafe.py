"""Parse policy XML without letting the document reach outside itself.

Policy files are written by root, but "written by root" includes "pasted from somewhere"; a
parser that expands entities or fetches DTDs turns a copy-paste into a file disclosure (XXE) or
a memory bomb (billion laughs).  So: entity resolution, DTD loading and network access are off,
huge_tree is off, input is size-limited, and any document with a DOCTYPE is refused outright —
a policy file never needs one.  Schema errors keep libxml2's line numbers so every message is
``file:line: what``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from lxml import etree

from .errors import PolicyError

#: The largest UA or PA file accepted (also enforced by rbac.load on the open file).
MAX_POLICY_BYTES = 32 * 1024 * 1024


def _parser(keep_layout: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
        collect_ids=False,
        # whitespace between elements is layout, not data: dropping those text nodes makes
        # the tree of a 100k-VM PA file 14 MB smaller (an element's own text is kept).  An
        # editor that writes the file back must keep it (keep_layout=True).
        remove_blank_text=not keep_layout,
    )


# a DOCTYPE outside comments and CDATA sections (a comment may mention one harmlessly)
_DOCTYPE_SCAN = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|(<!DOCTYPE)", re.S)


def _doctype_offset(data: bytes) -> int:
    """Offset of the first real <!DOCTYPE, or -1.  Checked before parsing so that an entity
    bomb is refused for what it is, not by whatever limit libxml2 happens to hit first."""
    if b"<!DOCTYPE" not in data:
        return -1
    for m in _DOCTYPE_SCAN.finditer(data):
        if m.group(1):
            return m.start(1)
    return -1


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def parse(
    data: bytes, name: str, *, max_size: int = MAX_POLICY_BYTES, keep_layout: bool = False
) -> etree._ElementTree:
    """Parse ``data`` (named ``name`` in messages) safely; raise PolicyError on any problem.

    ``keep_layout``: keep the whitespace between elements, for tools that write the document
    back byte for byte (svirt-admin's structured edits); loading for decisions drops it."""
    if len(data) > max_size:
        raise PolicyError(f"{name} is {len(data)} bytes, more than the limit of {max_size}", name)
    pos = _doctype_offset(data)
    if pos >= 0:
        raise PolicyError(
            "document type declarations (<!DOCTYPE ...>) and entities are not allowed in "
            "policy files; remove the DOCTYPE",
            name,
            _line_of(data, pos),
        )
    try:
        tree = etree.ElementTree(etree.fromstring(data, _parser(keep_layout)))
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or (exc.position[0] if exc.position else None)
        msg = exc.msg or str(exc)
        # libxml2 appends ", line N, column M" to its messages; the prefix already says it
        msg = msg.split(", line ")[0]
        if "XML_PARSE_HUGE" in msg or "too big" in msg:  # libxml2's per-item limit, not ours
            msg = (
                "one name, attribute value, text or comment is larger than the 10 MB an item "
                "may have; a policy file has no business holding such a thing"
            )
        raise PolicyError(f"not well-formed XML: {msg}", name, line) from None
    docinfo = tree.docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        raise PolicyError(
            "document type declarations are not allowed in policy files; remove the DOCTYPE",
            name,
            1,
        )
    for ent in tree.getroot().iter(etree.Entity):
        raise PolicyError(
            f"entity reference {ent.text} is not allowed in policy files", name, ent.sourceline
        )
    return tree


@cache
def _schema(kind: str) -> etree.XMLSchema:
    text = resources.files("rbac").joinpath("schemas", f"{kind}.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(text, _parser()))


_ROOTS = {"ua": ("UserConfiguration", "UA"), "pa": ("RolePolicyDefinition", "PA")}


def validate(tree: etree._ElementTree, kind: str, name: str) -> None:
    """Validate against rbac/schemas/<kind>.xsd; raise PolicyError listing every violation."""
    root = tree.getroot()
    want, other = _ROOTS[kind], _ROOTS["pa" if kind == "ua" else "ua"]
    if root.tag == other[0]:  # the commonest slip: the two files given the wrong way round
        raise PolicyError(
            f"this is a {other[1]} file (<{other[0]}>), but a {want[1]} file "
            f"(<{want[0]}>) is expected here; were the UA and PA files swapped?",
            name,
            root.sourceline,
        )
    if root.tag != want[0]:
        raise PolicyError(
            f"the root element is <{root.tag}>, but a {want[1]} file starts with <{want[0]}>",
            name,
            root.sourceline,
        )
    schema = _schema(kind)
    if schema.validate(tree):
        return
    errors = [PolicyError(_tidy(e.message), name, e.line or None) for e in schema.error_log]
    raise PolicyError.collect(errors or [PolicyError("does not match the schema", name)])


def _tidy(msg: str) -> str:
    """libxml2 schema messages, slightly shortened: "Element 'X': ..." stays, noise goes."""
    return msg.replace("This element is not expected.", "this element is not allowed here.")
