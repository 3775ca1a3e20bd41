"""Moving a running domain out of this host's memory and back: save, restore, migrate.

They belong together because they move the same thing, libxl's stream of a domain's state.
That stream carries libxl's JSON config but not our owner/label lines, so ``save`` stamps
secured-virt's record (owner, label name, policy name: seed 001) into the image's header
(xl_record) and ``saved_image_xml`` reads it back: the label travels with the image to any
host, as names, and the restoring host's service decides under *its* policy (its ssidref,
refusal under a policy of another name) exactly as for libvirt's metadata.  An image saved
by plain xl has no record; its label is then the config file of that name on the restoring
host, as before.  A restored domain without a config file here gets a transient one holding
its label while it runs (removed by destroy, like ``create``'s).

Migration is ``xl migrate``, which runs ``sh -c "ssh HOST xl migrate-receive"``: the host is
checked by xl_args.migrate_host before it gets near that shell.  The stream goes from xl to
xl; nothing of ours rides in it, so the destination learns the label from its own config
file of that name (see the migrate docstring).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from .base import BackendError, report_progress
from .xl_args import check_name, check_path, migrate_host
from .xl_cfg import XlConfig, XlConfigError
from .xl_labels import meta_into
from .xl_lifecycle import XlLifecycle
from .xl_listing import XlListing
from .xl_model import XlDomain
from .xl_parse import read_save_header
from .xl_record import make_record, stamp


class XlSave(XlListing, XlLifecycle):
    """Save images and migration (part of XlBackend; needs lookup and undefine)."""

    # -- save / restore -------------------------------------------------------------------
    def save(self, name: str, path: str) -> None:
        """``xl save``, then our record (owner and label of the domain now) into the image.

        The record is read *before* xl runs (xl save destroys the domain, and with it a
        transient domain's config).  If it cannot be stamped, the image is removed rather
        than kept without its label, and the save fails (the domain is gone: say so)."""
        check_name(name)
        check_path(path, "save image")
        info = self.lookup(name)
        found = self._any_config(name, running=info.id is not None)
        dom = XlDomain(name=name)
        if found is not None:
            meta_into(dom, found[1], self.ssidref_resolver)
        rec = make_record(name, info.uuid, dom.owner, dom.label_policy, dom.label)
        self._xl("save", name, ["save", "--", name, path], timeout=self.long_timeout)
        self._forget_transient(name)
        try:
            stamp(path, rec)
        except (BackendError, OSError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise BackendError(
                "operation-failed",
                f"domain '{name}' was saved to {path} by xl, but its label could not be "
                f"written into the image ({exc}); the image was removed so that it cannot "
                "come back unlabelled. The domain is no longer running: start it from its "
                "config file",
            ) from None

    def _image_domain(self, path: str) -> XlDomain:
        """The domain an image holds: settings from xl's config, owner and label from our
        record when there is one (its name and UUID must be the config's)."""
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
        rec = header.record
        if rec is not None:
            if rec["name"] != dom.name or (dom.uuid and rec["uuid"].lower() != dom.uuid.lower()):
                raise BackendError(
                    "invalid-arg",
                    f"'{path}': secured-virt's record names domain {rec['name']} "
                    f"({rec['uuid']}), the image holds {dom.name} ({dom.uuid}); refusing it",
                )
            dom.uuid = dom.uuid or rec["uuid"]
            dom.owner = rec.get("owner")
            label = rec.get("label")
            dom.label_policy, dom.label = (
                (label["policy"], label["name"]) if label else (None, None)
            )
        return dom

    def saved_image_xml(self, path: str) -> str:
        """Domain XML for a save image: name/uuid/resources from the image, our metadata
        (owner, label) from the record stamped into it, or (an image saved by plain xl) from
        the config file of that name on this host."""
        dom = self._image_domain(path)
        if read_save_header(path).record is None:
            cfg = self._config(dom.name)
            if cfg is not None:
                meta_into(dom, cfg, self.ssidref_resolver)
        return dom.to_domain_xml()

    def restore(self, path: str) -> str:
        """``xl restore``; a domain with no config file here first gets a transient one
        holding the image's settings and record, so its label has a place while it runs (the
        service then writes the label it decided on into it)."""
        dom = self._image_domain(path)
        name = dom.name
        if self._running(name):
            raise BackendError("operation-failed", f"domain '{name}' is already running")
        transient = self._config(name) is None
        if transient:
            self.transient_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._write_file(self._transient_path(name), dom.to_config_text())
        try:
            self._xl("restore", name, ["restore", "--", path], timeout=self.long_timeout)
        except BackendError:
            if transient:
                self._forget_transient(name)
            raise
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
