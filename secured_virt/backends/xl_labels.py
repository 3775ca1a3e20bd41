"""secured-virt's metadata (owner, ACM label) for xl domains, kept in their config files.

xl has no place for foreign metadata, so it lives in two lines of the domain's config file,
``svirt_owner = "alice"`` and ``access_control = ['policy=P,label=L']`` (see xl_model); the
backend offers them through get_metadata/set_metadata as the same ``<svirt:vm>`` element the
libvirt backend stores.  xl's own save images and migration streams carry libxl's JSON
config, which has no room for these lines, so after a restore or a migration the label is the
one in the config file of that name on the host doing the restore (``meta_into`` is how the
other modules put it back into a domain read from xl).
"""

from __future__ import annotations

from lxml import etree

from . import domxml
from .base import BackendError, NoSuchDomain
from .xl_args import check_name
from .xl_cfg import XlConfig
from .xl_core import XlCore
from .xl_model import SVIRT_NS, XlDomain, parse_label


def meta_into(dom: XlDomain, cfg: XlConfig) -> None:
    """Copy the owner and label lines of cfg into dom."""
    owner = cfg.get("svirt_owner")
    dom.owner = owner if isinstance(owner, str) and owner else None
    if "access_control" in cfg:
        dom.label_policy, dom.label = parse_label(cfg.get("access_control"))


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
        meta_into(dom, found[1])
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
