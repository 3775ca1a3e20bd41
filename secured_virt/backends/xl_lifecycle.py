"""A domain's life under xl: defined (a config file), started, stopped, transient, autostarted.

xl itself only knows running domains, so "defined" means a config file in the config
directory (xl_files): ``define`` writes it from a libvirt-style domain XML (keeping the
settings we do not manage when the file exists), ``start`` is ``xl create -- <file>``,
``create`` (transient) writes a config into the transient directory and creates from there,
and ``dumpxml`` reads the running domain (``xl list -l``) or the file back as domain XML.
"""

from __future__ import annotations

import uuid as uuidlib

from .base import BackendError, NoSuchDomain
from .xl_args import check_name
from .xl_core import XlCore
from .xl_labels import meta_into
from .xl_model import XlDomain


class XlLifecycle(XlCore):
    """Power operations, definitions and autostart (part of XlBackend)."""

    # -- power ----------------------------------------------------------------------------
    def start(self, name: str) -> None:
        path, _cfg = self._require_config(name)
        if self._running(name):
            raise BackendError("operation-failed", f"domain '{name}' is already running")
        self._xl("start", name, ["create", "--", str(path)], timeout=self.long_timeout)

    def shutdown(self, name: str) -> None:
        # -F: fall back to an ACPI power event for HVM guests without PV drivers (as virsh does)
        self._xl("shut down", check_name(name), ["shutdown", "-F", "--", name])

    def reboot(self, name: str) -> None:
        self._xl("reboot", check_name(name), ["reboot", "-F", "--", name])

    def reset(self, name: str) -> None:
        self._xl("reset", check_name(name), ["trigger", "--", name, "reset"])

    def destroy(self, name: str) -> None:
        self._xl("destroy", check_name(name), ["destroy", "--", name])
        self._forget_transient(name)

    def suspend(self, name: str) -> None:
        self._xl("suspend", check_name(name), ["pause", "--", name])

    def resume(self, name: str) -> None:
        self._xl("resume", check_name(name), ["unpause", "--", name])

    # -- definitions ----------------------------------------------------------------------
    @staticmethod
    def _from_xml(xml: str) -> XlDomain:
        if not isinstance(xml, str) or not xml.lstrip().startswith("<"):
            raise BackendError(
                "invalid-arg",
                "the xl backend takes a libvirt-style domain XML; native xl configs go into "
                "the config directory directly",
            )
        dom = XlDomain.from_domain_xml(xml)
        check_name(dom.name)
        if not dom.uuid:
            dom.uuid = str(uuidlib.uuid4())
        return dom

    def define(self, xml: str) -> str:
        dom = self._from_xml(xml)
        path = self._cfg_path(dom.name)
        cfg = self._read_cfg(path)
        # an existing file keeps the settings we do not manage (comments, vnc, serial, ...)
        text = dom.to_config_text() if cfg is None else dom.apply_to(cfg).text
        self._write_file(path, text)
        return dom.name

    def undefine(self, name: str) -> None:
        path, _cfg = self._require_config(name)
        self._remove_config(path)

    def create(self, xml: str) -> str:
        dom = self._from_xml(xml)
        if self._running(dom.name):
            raise BackendError("operation-failed", f"domain '{dom.name}' already exists")
        self.transient_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._transient_path(dom.name)
        self._write_file(path, dom.to_config_text())
        try:
            self._xl("create", dom.name, ["create", "--", str(path)], timeout=self.long_timeout)
        except BackendError:
            self._forget_transient(dom.name)
            raise
        return dom.name

    def dumpxml(self, name: str, *, inactive: bool = False, security_info: bool = False) -> str:
        """Domain XML from the running domain (``xl list -l``) or from its config file.

        ``security_info`` changes nothing: secrets in a config (e.g. vncpasswd) are never
        put into the XML.
        """
        check_name(name)
        running = self._running(name)
        if running and not inactive:
            details = self._details(name)
            if details:
                domid, dom = next(iter(details.items()))
                found = self._any_config(name, running=True)
                if found is not None:
                    meta_into(dom, found[1], self.ssidref_resolver)
                return dom.to_domain_xml(domid)
        found = self._any_config(name, running=running)
        if found is None:
            if running:
                raise BackendError(
                    "operation-failed", f"cannot read the configuration of domain '{name}'"
                )
            raise NoSuchDomain(name)
        dom = XlDomain.from_config(found[1])
        meta_into(dom, found[1], self.ssidref_resolver)
        return dom.to_domain_xml()

    # -- autostart ------------------------------------------------------------------------
    def get_autostart(self, name: str) -> bool:
        check_name(name)
        if self._config(name) is None and not self._running(name):
            raise NoSuchDomain(name)
        return self._autostart_link(name)

    def set_autostart(self, name: str, flag: bool) -> None:
        """xendomains' convention: a symlink <config dir>/auto/NAME.cfg -> ../NAME.cfg."""
        path, _cfg = self._require_config(name)
        self._set_autostart_link(path, flag)
