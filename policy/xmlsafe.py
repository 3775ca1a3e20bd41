"""Parse untrusted policy XML safely and validate it against the package's XSD.

Why so careful: policy files come from administrators' editors, from the XSM API and from other
hosts (migration); the parser runs in a root daemon.  So: a size limit before parsing; lxml with
entity resolution, DTD loading and network access off; no DOCTYPE at all (a policy never needs
one, and refusing it removes XXE and entity-expansion attacks at the root); errors carry the
file and line and say what to do.
"""

from __future__ import annotations

import re
import threading
from importlib import resources

from lxml import etree

from .constants import POLICY_NS, ROOT_TAG
from .errors import PolicyFileError, Xserr

MAX_POLICY_BYTES = 4 * 1024 * 1024

_schema: etree.XMLSchema | None = None
_schema_lock = threading.Lock()
_NS_PREFIX = "{" + POLICY_NS + "}"


def _parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not meant to be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def _line_of(data: bytes, needle: bytes) -> int:
    pos = data.find(needle)
    return data.count(b"\n", 0, pos) + 1 if pos >= 0 else 1


def parse_untrusted(data: bytes, source: str, max_bytes: int = MAX_POLICY_BYTES) -> etree._Element:
    """Parse ``data`` (the bytes of a policy) and return its root element.

    Raises PolicyFileError (BAD_XML) for oversized input, malformed XML, a DOCTYPE or entity
    declaration, or an entity reference.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise PolicyFileError(
            source,
            0,
            f"policy is {len(data)} bytes, more than the limit of {max_bytes} bytes; "
            "split it or raise the limit (max_bytes) if it is genuine",
            Xserr.BAD_XML,
        )
    # Fast refusal before the parser sees anything (covers every ASCII-compatible encoding);
    # the docinfo check below covers the rest.
    for needle in (b"<!DOCTYPE", b"<!ENTITY"):
        if needle in data:
            raise PolicyFileError(
                source,
                _line_of(data, needle),
                f"{needle.decode()[2:]} declarations are not allowed in a policy file "
                "(they enable entity expansion and external entity attacks); remove it",
                Xserr.BAD_XML,
            )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or (exc.position[0] if exc.position else 0)
        msg = re.sub(r",? line \d+, column \d+$", "", str(exc.msg or exc))
        raise PolicyFileError(source, line, f"malformed XML: {msg}", Xserr.BAD_XML) from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise PolicyFileError(
            source, 1, "DOCTYPE declarations are not allowed in a policy file", Xserr.BAD_XML
        )
    for ent in root.iter(etree.Entity):
        raise PolicyFileError(
            source,
            ent.sourceline or 0,
            f"entity reference {ent.text} is not allowed in a policy file; write the text out",
            Xserr.BAD_XML,
        )
    return root


def _load_schema() -> etree.XMLSchema:
    global _schema
    if _schema is None:
        data = resources.files("policy").joinpath("schemas/security_policy.xsd").read_bytes()
        doc = etree.fromstring(data, _parser())
        _schema = etree.XMLSchema(doc)
    return _schema


def _readable(msg: str) -> str:
    return msg.replace(_NS_PREFIX, "")


def validate(root: etree._Element, source: str) -> None:
    """Check the document element and validate against the XSD; raise PolicyFileError."""
    expected = _NS_PREFIX + ROOT_TAG
    if root.tag != expected:
        qn = etree.QName(root)
        where = f"namespace {qn.namespace!r}" if qn.namespace else "no namespace"
        raise PolicyFileError(
            source,
            root.sourceline or 1,
            f"the document element is <{qn.localname}> in {where}; a security policy must "
            f'be <{ROOT_TAG} xmlns="{POLICY_NS}">',
            Xserr.BAD_XML,
        )
    with _schema_lock:
        schema = _load_schema()
        ok = schema.validate(root)
        log = list(schema.error_log) if not ok else []
    if not ok:
        first = log[0]
        more = f" (and {len(log) - 1} more schema errors)" if len(log) > 1 else ""
        raise PolicyFileError(
            source,
            first.line,
            f"does not match the policy schema: {_readable(first.message)}{more}",
            Xserr.BAD_XML,
        )
