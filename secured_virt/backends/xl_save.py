"""Moving a running domain out of this host's memory and back: save, restore, migrate.

They belong together because they move the same thing, libxl's stream of a domain's state,
and share its limit: the stream carries libxl's JSON config but not our owner/label lines,
so the label after a restore or a migration comes from the config file of that name on the
host doing the restore (``saved_image_xml`` shows exactly that pairing before a restore is
allowed).  Migration is ``xl migrate``, which runs ``sh -c "ssh HOST xl migrate-receive"``:
the host is checked by xl_args.migrate_host before it gets near that shell.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import BackendError, report_progress
from .xl_args import check_name, check_path, migrate_host
from .xl_cfg import XlConfig, XlConfigError
from .xl_labels import meta_into
from .xl_lifecycle import XlLifecycle
from .xl_listing import XlListing
from .xl_model import XlDomain
from .xl_parse import read_save_header


class XlSave(XlListing, XlLifecycle):
    """Save images and migration (part of XlBackend; needs lookup and undefine)."""

    # -- save / restore -------------------------------------------------------------------
    def save(self, name: str, path: str) -> None:
        check_name(name)
        check_path(path, "save image")
        self._xl("save", name, ["save", "--", name, path], timeout=self.long_timeout)

    def _image_domain(self, path: str) -> XlDomain:
        check_path(path, "save image")
        header = read_save_header(path)
        if isinstance(header.config, dict):
            dom = XlDomain.from_json({"config": header.config})
        elif isinstance(header.config, str):
            try:
                dom = XlDomain.from_config(XlConfig(header.config, f"{path} (config)"))
            except XlConfigError as exc:
                raise BackendError("invalid-arg", str(exc)) from None
        else:
            raise BackendError(
                "invalid-arg", f"'{path}' holds no domain config: cannot tell which domain it is"
            )
        check_name(dom.name)
        return dom

    def saved_image_xml(self, path: str) -> str:
        """Domain XML for a save image: name/uuid/resources from the image, our metadata
        (owner, label) from the config file of that name (the image cannot carry it)."""
        dom = self._image_domain(path)
        cfg = self._config(dom.name)
        if cfg is not None:
            meta_into(dom, cfg)
        return dom.to_domain_xml()

    def restore(self, path: str) -> str:
        name = self._image_domain(path).name
        if self._running(name):
            raise BackendError("operation-failed", f"domain '{name}' is already running")
        self._xl("restore", name, ["restore", "--", path], timeout=self.long_timeout)
        return name

    # -- migration ------------------------------------------------------------------------
    def migrate(
        self,
        name: str,
        dest_uri: str,
        *,
        live: bool = False,
        persistent: bool = False,
        undefine_source: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """``xl migrate -- NAME HOST`` (xl migrations are always live; ``live`` is accepted).

        HOST comes from ``dest_uri`` ("host", "xen+ssh://host/", "ssh://host") and must be a
        plain DNS name or IPv4 address: xl runs ``sh -c "ssh HOST xl migrate-receive"``.
        progress gets (0, memory) before and (memory, memory) after; xl reports nothing
        in between that we could read reliably.
        """
        check_name(name)
        host = migrate_host(dest_uri)
        if persistent:
            raise BackendError(
                "unsupported",
                "xl cannot define the domain on the destination (--persistent): copy its "
                "config file there after migrating",
            )
        info = self.lookup(name)
        if info.id is None:
            raise BackendError("operation-failed", f"domain '{name}' is not running")
        total = info.mem_kib * 1024
        progress = report_progress(progress, 0, total)
        self._xl("migrate", name, ["migrate", "--", name, host], timeout=self.long_timeout)
        report_progress(progress, total, total)
        if undefine_source and self._cfg_path(name).exists():
            self.undefine(name)
