"""Moving an application's <metadata> element between its self-describing and libvirt's form.

libvirt stores a metadata element under a namespace given *separately* (uri + prefix key): it
wants the fragment unqualified (``<vm><owner>alice</owner></vm>``), puts every unqualified
element into the namespace itself, and refuses a fragment that already declares that namespace
with a prefix ("failed to create a new XML namespace").  On the way out it strips the namespace
again.  Our callers (vmmeta) write and read fragments that say which namespace they are in
(``<svirt:vm xmlns:svirt="...">``).  These two functions translate, so a fragment read back
parses the same way as the one written.
"""

from __future__ import annotations

import functools

from lxml import etree

from . import domxml
from .base import BackendError


def _qualify(el: etree._Element, src_ns: str | None, dst_ns: str | None) -> str:
    qn = etree.QName(el)
    ns = dst_ns if qn.namespace == src_ns else qn.namespace
    return f"{{{ns}}}{qn.localname}" if ns else qn.localname


def _copy_into(el: etree._Element, new: etree._Element, src_ns, dst_ns) -> etree._Element:
    for k, v in el.attrib.items():
        new.set(k, v)
    new.text = el.text
    new.tail = el.tail
    for child in el:
        if not isinstance(child.tag, str):
            continue
        tag = _qualify(child, src_ns, dst_ns)
        foreign = etree.QName(tag).namespace not in (None, dst_ns)
        nsmap = {child.prefix: etree.QName(tag).namespace} if foreign and child.prefix else None
        _copy_into(child, etree.SubElement(new, tag, nsmap=nsmap), src_ns, dst_ns)
    return new


def _rebuild(el: etree._Element, src_ns: str | None, dst_ns: str | None) -> etree._Element:
    """A copy of el with elements in src_ns moved to dst_ns (None: no namespace)."""
    nsmap = {None: dst_ns} if dst_ns else None
    root = etree.Element(_qualify(el, src_ns, dst_ns), nsmap=nsmap)
    out = _copy_into(el, root, src_ns, dst_ns)
    out.tail = None
    return out


@functools.lru_cache(maxsize=4096)
def to_libvirt(fragment: str, ns_uri: str) -> str:
    """The fragment with ``ns_uri`` removed from its elements (other namespaces are kept).
    Remembered: a pure function of its arguments (what cannot be converted raises, and is not
    remembered), and each start writes its VM's element with a new pair this way."""
    root = domxml.parse(fragment)
    if not isinstance(root.tag, str):
        raise BackendError("invalid-arg", "metadata must be one XML element")
    out = _rebuild(root, ns_uri, None)
    etree.cleanup_namespaces(out)
    return etree.tostring(out, encoding="unicode")


def from_libvirt(fragment: str, ns_uri: str) -> str:
    """The fragment libvirt returned, with its unqualified elements put back into ``ns_uri``."""
    root = domxml.parse(fragment)
    out = _rebuild(root, None, ns_uri)
    etree.cleanup_namespaces(out)
    return etree.tostring(out, encoding="unicode")
