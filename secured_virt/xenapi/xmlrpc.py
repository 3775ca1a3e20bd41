"""XML-RPC in and out, safely: the standard library's parser behind a hardened expat.

Why not plain ``xmlrpc.client.loads``: it hands the body to expat, which expands internal
entities (the "billion laughs") and reports external ones.  XML-RPC never needs a DTD, so the
parser here refuses a document the moment a ``<!DOCTYPE`` starts, and also refuses any entity
declaration or external entity reference should one get through; with no DTD, no entity can
be defined and an undefined one is a well-formedness error.  This is what defusedxml does for
xmlrpc (``forbid_dtd``), in the few lines it takes, on the standard library's own unmarshaller
(no XML is parsed by hand here).  The body's size is bounded before it gets here (the HTTP
server's ``client_max_size``), and the decoded values are checked for size and depth below.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

#: nesting of arrays/structs in a call's parameters (Xen-API calls need 2 or 3)
MAX_DEPTH = 16
#: values (scalars + containers) in one call's parameters
MAX_ITEMS = 100_000


class XmlRpcError(Exception):
    """The request is not an acceptable XML-RPC call; the message says why."""


class _Refused(Exception):
    pass


def _refuse(what: str):
    def handler(*_args):
        raise _Refused(what)

    return handler


_REFUSE_DOCTYPE = _refuse("a DOCTYPE (XML-RPC needs no DTD)")
_REFUSE_ENTITY = _refuse("an entity declaration")
_REFUSE_UNPARSED = _refuse("an unparsed entity declaration")
_REFUSE_EXTERNAL = _refuse("an external entity reference")
_REFUSE_NOTATION = _refuse("a notation declaration")


class _HardenedParser(xmlrpc.client.ExpatParser):
    """The stdlib's expat driver with every DTD feature refused."""

    def __init__(self, target):
        super().__init__(target)
        p = self._parser
        p.StartDoctypeDeclHandler = _REFUSE_DOCTYPE
        p.EntityDeclHandler = _REFUSE_ENTITY
        p.UnparsedEntityDeclHandler = _REFUSE_UNPARSED
        p.ExternalEntityRefHandler = _REFUSE_EXTERNAL
        p.NotationDeclHandler = _REFUSE_NOTATION
        # never fetch anything: no parameter entities, no external DTD subset
        p.SetParamEntityParsing(0)  # XML_PARAM_ENTITY_PARSING_NEVER


def loads(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """(method name, params) of an XML-RPC ``methodCall``; XmlRpcError if it is not one."""
    unmarshaller = xmlrpc.client.Unmarshaller(use_datetime=False, use_builtin_types=False)
    parser = _HardenedParser(unmarshaller)
    try:
        parser.feed(body)
        parser.close()
        params = unmarshaller.close()
        method = unmarshaller.getmethodname()
    except _Refused as exc:
        raise XmlRpcError(f"refused: the request contains {exc}") from None
    except xmlrpc.client.ResponseError as exc:
        raise XmlRpcError(f"not an XML-RPC call: {exc}") from None
    except Exception as exc:  # expat errors, bad values (int("x")), truncated documents
        raise XmlRpcError(f"malformed XML-RPC: {type(exc).__name__}: {exc}") from None
    if not isinstance(method, str) or not method:
        raise XmlRpcError("not an XML-RPC call: no <methodName>")
    _check_shape(params)
    return method, tuple(params)


def _check_shape(params) -> None:
    count = 0
    todo: list[tuple[Any, int]] = [(params, 0)]
    while todo:
        value, depth = todo.pop()
        count += 1
        if count > MAX_ITEMS:
            raise XmlRpcError(f"too many values in the call (more than {MAX_ITEMS})")
        if depth > MAX_DEPTH:
            raise XmlRpcError(f"parameters nest deeper than {MAX_DEPTH} levels")
        if isinstance(value, list | tuple):
            todo.extend((v, depth + 1) for v in value)
        elif isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values())


class Encoded:
    """A value already encoded as XML-RPC (``<value>...</value>``), written as it is.

    Why: ``VM.get_all_records`` answers the same records again and again (a listing changes
    little between two calls); each record is encoded once (``encode``) and kept by the
    caller, so an answer of 1,000 records is a join of strings."""

    __slots__ = ("xml",)

    def __init__(self, xml: str):
        self.xml = xml


class EncodedParts:
    """A value already encoded as XML-RPC in UTF-8 bytes, in ``parts`` to be written in order.

    Why: ``VM.get_all_records`` over 1,000 VMs is 1.2 MB made of kept per-VM members; as
    bytes they go into the answer's one final join, instead of a join into a str, a second
    join with the answer around it and an encoding of the whole (three copies of 1.2 MB,
    about a millisecond).  Only ``dumps_result`` writes these (``encode`` refuses them)."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[bytes]):
        self.parts = parts


class Streamed:
    """A success whose value is sent while it is made (``VM.get_all_records``).

    ``produce(emit)`` awaits ``emit(parts)`` with each part of the value as it is ready (UTF-8
    XML-RPC bytes, in order) and returns the rest; it raises (the method's Failure) only
    before its first part, since svirtd decides before any row leaves.  The server writes the
    answer around the parts (``stream_envelope``), so a streamed answer is byte for byte the
    one ``dumps_result(success(EncodedParts(all the parts)))`` would give."""

    __slots__ = ("produce",)

    def __init__(self, produce):
        self.produce = produce


_MAX_INT = 2**31 - 1
_MIN_INT = -(2**31)


def _escape(text: str) -> str:
    """XML's escaping of character data (``&``, ``<``, ``>``), skipped for plain text."""
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def _write(value: Any, out: list[str], depth: int = 0) -> None:
    """Append ``value`` as compact XML-RPC to ``out``, with Xen-API's wire conventions.

    One pass, no Marshaller object, no per-element newline: strings as bare
    ``<value>text</value>`` (XML-RPC's default type; every parser reads it as ``<string>``,
    and a client parses a 1,000-VM answer about a fifth faster than with a newline and a
    ``<string>`` per element), integers beyond XML-RPC's 32 bits as decimal strings (as
    xapi sends them), None as "" (xapi sends no nil), dict keys as strings."""
    t = type(value)
    if t is str:
        out.append(f"<value>{_escape(value)}</value>" if value else "<value></value>")
    elif t is Encoded:
        out.append(value.xml)
    elif t is EncodedParts:
        out.append(value)  # dumps_result writes its bytes as they are
    elif t is bool:
        out.append("<value><boolean>1</boolean></value>" if value else
                   "<value><boolean>0</boolean></value>")  # fmt: skip
    elif t is int:
        if _MIN_INT <= value <= _MAX_INT:
            out.append(f"<value><int>{value}</int></value>")
        else:
            out.append(f"<value>{value}</value>")
    elif value is None:
        out.append("<value></value>")
    elif depth > MAX_DEPTH:
        raise TypeError(f"cannot marshal values nested deeper than {MAX_DEPTH} levels")
    elif isinstance(value, dict):
        out.append("<value><struct>")
        for k, v in value.items():
            out.append(f"<member><name>{_escape(str(k))}</name>")
            _write(v, out, depth + 1)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(value, list | tuple):
        out.append("<value><array><data>")
        for v in value:
            _write(v, out, depth + 1)
        out.append("</data></array></value>")
    elif isinstance(value, str):  # a str subclass
        _write(str(value), out, depth)
    elif isinstance(value, bool | int):  # an int subclass (IntEnum: Xen's XSERR codes)
        _write(bool(value) if isinstance(value, bool) else int(value), out, depth)
    elif isinstance(value, float):
        out.append(f"<value><double>{value!r}</double></value>")
    elif isinstance(value, bytes | bytearray):
        import base64

        out.append(f"<value><base64>{base64.b64encode(value).decode()}</base64></value>")
    else:
        raise TypeError(f"cannot marshal {type(value).__name__} objects")


def encode(value: Any) -> Encoded:
    """``value`` encoded once, for reuse inside answers (``Encoded``)."""
    out: list = []
    _write(value, out)
    if any(type(x) is EncodedParts for x in out):
        raise TypeError("EncodedParts are written by dumps_result only")
    return Encoded("".join(out))


_HEAD = "<?xml version='1.0' encoding='utf-8'?>\n<methodResponse>\n<params>\n<param>\n"
_TAIL = "</param>\n</params>\n</methodResponse>\n"


def dumps_result(result: dict[str, Any]) -> bytes:
    """A methodResponse carrying one Xen-API result struct, built in one pass."""
    out: list = [_HEAD]
    _write(result, out)
    out.append(_TAIL)
    chunks: list[bytes] = []
    text: list[str] = []
    for x in out:
        if type(x) is EncodedParts:
            chunks.append("".join(text).encode("utf-8"))
            chunks.extend(x.parts)
            text = []
        else:
            text.append(x)
    if not chunks:
        return "".join(text).encode("utf-8")
    chunks.append("".join(text).encode("utf-8"))
    return b"".join(chunks)


def stream_envelope() -> tuple[bytes, bytes]:
    """The bytes of a success answer before and after its value (see ``Streamed``)."""
    mark = b"\0"  # never in an answer: XML cannot carry it
    head, tail = dumps_result(success(EncodedParts([mark]))).split(mark)
    return head, tail


def success(value: Any) -> dict[str, Any]:
    """A success result; the wire conventions are applied as it is written (``_write``)."""
    return {"Status": "Success", "Value": value}


def failure(code: str, *params: Any) -> dict[str, Any]:
    return {"Status": "Failure", "ErrorDescription": [str(code), *params]}


def _wire(value: Any) -> Any:
    """Xen-API's wire conventions as plain values, what ``_write`` writes: 64-bit integers
    travel as strings (XML-RPC's <int> is 32 bits), None as "" (xapi sends no nil), dict keys
    as strings.  For handing a result to another marshaller (the tests compare ours with the
    standard library's)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else str(value)
    if value is None:
        return ""
    if isinstance(value, Encoded | EncodedParts):
        return value
    if isinstance(value, dict):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value
