"""secured-virt's metadata (owner, ACM label) for xl domains, kept in their config files.

xl has no place for foreign metadata, so it lives in two lines of the domain's config file,
``svirt_owner = "alice"`` and ``access_control = ['policy=P,label=L']`` (see xl_model, which
also reads seed 001's ``acm_label`` and a legacy ``ssidref``); the backend offers them through
get_metadata/set_metadata as the same ``<svirt:vm>`` element the libvirt backend stores.
xl's own save images carry libxl's JSON config, which has no room for these lines, so save
stamps them into the image header (xl_save, xl_record).  ``meta_into`` is how the other
modules put them into a domain read from xl.

A legacy ``ssidref = N`` names a label only through one policy's numbering.  The backend knows
no policies: whoever does (shype.enforcer) sets ``ssidref_resolver`` to a function giving
(policy, label) for a number under the active policy.  Without one, or for a number the
active policy does not have, the label is ``ACM:__SSIDREF__:0x...``, a policy that is never
active, so the domain is refused wherever its label is checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lxml import etree

from . import domxml
from .base import BackendError, NoSuchDomain
from .xl_args import check_name
from .xl_cfg import XlConfig
from .xl_core import XlCore
from .xl_model import SVIRT_NS, UNRESOLVED_POLICY, XlDomain, label_from_config

log = logging.getLogger(__name__)
_warned: set[tuple[str, int]] = set()

Resolver = Callable[[int], "tuple[str, str] | None"]


def meta_into(dom: XlDomain, cfg: XlConfig, resolve: Resolver | None = None) -> None:
    """Copy the owner and label lines of cfg into dom (a legacy ssidref through resolve)."""
    owner = cfg.get("svirt_owner")
    dom.owner = owner if isinstance(owner, str) and owner else None
    src = label_from_config(cfg)
    if src.ssidref is None:
        dom.label_policy, dom.label = src.policy, src.label
        return
    found = None
    if resolve is not None:
        try:
            found = resolve(src.ssidref)
        except Exception:  # an unresolvable number gets the fail-closed label
            found = None
    if found is None:
        dom.label_policy, dom.label = UNRESOLVED_POLICY, f"0x{src.ssidref:08x}"
        said = "names no label of the active policy (or sHype/ACM is off)"
    else:
        dom.label_policy, dom.label = found
        said = f"read as ACM:{found[0]}:{found[1]} through the active policy's map"
    key = (src.where, src.ssidref)
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "%s: legacy ssidref = %d (0x%08x) %s; ssidrefs differ between hosts and policy "
            "versions: write access_control = ['policy=P,label=L'] instead (setlabel does)",
            src.where,
            src.ssidref,
            src.ssidref,
            said,
        )


class XlLabels(XlCore):
    """get_metadata/set_metadata over the config file (part of XlBackend)."""

    def get_metadata(self, name: str, ns_uri: str) -> str | None:
        """Our <vm> element built from svirt_owner/access_control (None if neither is set)."""
        check_name(name)
        running = self._running(name)
        found = self._any_config(name, running=running)
        if found is None:
            if running:
                return None
            raise NoSuchDomain(name)
        if ns_uri != SVIRT_NS:
            return None
        dom = XlDomain(name=name)
        meta_into(dom, found[1], self.ssidref_resolver)
        return dom.metadata_xml()

    def set_metadata(
        self,
        name: str,
        xml_fragment: str | None,
        key: str,
        ns_uri: str,
        *,
        live: bool = True,
        config: bool = True,
    ) -> None:
        """Write owner/label into the config file (the only place xl keeps them; the flags
        make no difference: a running domain reads its label from there too)."""
        check_name(name)
        if ns_uri != SVIRT_NS:
            raise BackendError(
                "unsupported",
                f"the xl backend keeps metadata only in secured-virt's namespace ({SVIRT_NS})",
            )
        running = self._running(name)
        found = self._any_config(name, running=running)
        if found is None:
            if running:
                raise BackendError(
                    "unsupported",
                    f"domain '{name}' has no config file in {self.config_dir}: define it "
                    "before labelling it",
                )
            raise NoSuchDomain(name)
        path, cfg = found
        dom = XlDomain(name=name)
        if xml_fragment is not None:
            root = domxml.parse(xml_fragment)
            qn = etree.QName(root)
            if qn.localname != "vm" or qn.namespace not in (None, SVIRT_NS):
                raise BackendError(
                    "invalid-arg",
                    f"expected secured-virt's <vm> metadata element, got <{qn.localname}>",
                )
            dom.set_metadata_element(root)
        dom.write_metadata(cfg)
        self._save_cfg(path, cfg)
