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

Migration is ``xl migrate -s ""`` with a transport of ours (xl_migrate): the record travels
as the arguments of secured-virt's receiver on the destination (cli/xl_receive.py), which
decides under *its* policy, gives the arriving domain its label (``receive_prepare``: the
transient config, under xl's ``NAME--incoming`` name too) and only then starts the real
``xl migrate-receive`` on the stream.  A destination without the receiver fails the
migration before xl suspends anything: the domain keeps running here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection

from .base import BackendError, ProgressCallback, report_progress
from .xl_args import check_name, check_path, migrate_host
from .xl_cfg import XlConfig, XlConfigError
from .xl_labels import meta_into
from .xl_lifecycle import XlLifecycle
from .xl_listing import XlListing
from .xl_migrate import (
    RECEIVER,
    SSH,
    AwayLabel,
    check_uuid,
    disk_resources,
    incoming_name,
    no_receiver,
    recorded_domain,
    refusal_in,
    transport,
)
from .xl_model import XlDomain
from .xl_parse import read_save_header
from .xl_record import check_record, make_record, stamp
from .xl_run import detail, output_of


class XlSave(XlListing, XlLifecycle):
    """Save images and migration (part of XlBackend; needs lookup and undefine)."""

    #: the receiver's command on the destination and the transport to it (xl_migrate); the
    #: tests point them at a local command instead of ssh
    migrate_receiver: tuple[str, ...] = RECEIVER
    migrate_ssh: tuple[str, ...] = SSH

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
    def _record_of(self, name: str, uuid: str, running: bool) -> dict:
        """Our record (owner, label as names) of a domain now, from its config file."""
        found = self._any_config(name, running=running)
        dom = XlDomain(name=name)
        if found is not None:
            meta_into(dom, found[1], self.ssidref_resolver)
        return make_record(name, uuid, dom.owner, dom.label_policy, dom.label)

    def migrate(
        self,
        name: str,
        dest_uri: str,
        *,
        live: bool = False,
        persistent: bool = False,
        undefine_source: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        """``xl migrate -s "" -- NAME TRANSPORT`` (xl migrations are always live; ``live`` is
        accepted), TRANSPORT being root's ssh to secured-virt's receiver on HOST with the
        domain's record (xl_migrate): the label travels as names and the destination decides.

        HOST comes from ``dest_uri`` ("host", "xen+ssh://host/", "ssh://host") and must be a
        plain DNS name or IPv4 address (it ends up in a shell command line, quoted).  A refusal
        by the destination is a BackendError "permission" naming its reason; the domain then
        keeps running here (xl suspends nothing before the receiver's banner).  progress gets
        (0, memory) before and (memory, memory) after; xl reports nothing in between that we
        could read reliably.
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
        incoming_name(name)
        rec = self._record_of(name, info.uuid, running=True)
        rune = transport(
            host,
            rec,
            disk_resources(self.dumpxml(name, inactive=False)),
            receiver=self.migrate_receiver,
            ssh=self.migrate_ssh,
        )
        total = info.mem_kib * 1024
        progress = report_progress(progress, 0, total)
        away = AwayLabel(self, name, info.id, rec)  # its label under xl's NAME--migratedaway
        try:
            r = self._run(["migrate", "-s", "", "--", name, rune], timeout=self.long_timeout)
        except BackendError as exc:
            away.settle(None)
            raise away.noted(exc) from None
        away.settle(r.returncode)
        if r.returncode != 0:
            out = output_of(r)
            refused = refusal_in(out)
            if refused is not None:
                raise BackendError(
                    "permission",
                    f"{host} refused domain '{name}': {refused}; it keeps running here",
                )
            if no_receiver(out):
                raise BackendError(
                    "operation-failed",
                    f"cannot migrate domain '{name}': {host} did not answer as secured-virt's "
                    f"receiver ({detail(out)}); is {self.migrate_receiver[0]} installed "
                    f"there, and may root ssh to it without a password? The domain keeps "
                    "running here",
                )
            raise away.noted(self._fail("migrate", name, r), out)
        if away.unknown is not None:
            raise BackendError(
                "operation-failed",
                f"domain '{name}' migrated to {host} (xl reports success){away.note()}",
            )
        report_progress(progress, total, total)
        if undefine_source and self._cfg_path(name).exists():
            self.undefine(name)

    # -- the destination's side (cli/xl_receive.py) ------------------------------------------
    def receive_prepare(self, rec: dict) -> Callable[[Collection[str]], None]:
        """Give a domain about to arrive its owner and label before it runs: the transient
        config of NAME and of xl's NAME--incoming (the sHype state rebuilt from what runs sees
        its label from the first moment), or the carried lines written into the defined config
        of the same domain.  Refuses a defined config of that name for another UUID (another
        domain).  Returns ``done(running_as)``, called once xl is done with the names the
        arrived domain runs under now (the receiver tells it by domid: NAME once received,
        NAME--incoming if xl left it behind, none if xl destroyed it): a name it does not run
        under loses the label written for it (no label for a domain that is not there, nor for
        another domain that took the name meanwhile), one it runs under keeps it (a running
        domain is never unlabelled); the defined config gets its old text back unless the
        domain runs as NAME."""
        check_record(rec, "<migration record>")
        name, uuid = check_name(rec["name"]), check_uuid(rec["uuid"])
        incoming = incoming_name(name)
        dom = recorded_domain(name, rec)
        defined_path = self._cfg_path(name)
        defined = self._read_cfg(defined_path)
        old_text = defined.text if defined is not None else None
        if defined is not None:
            theirs = defined.get("uuid")
            if uuid and isinstance(theirs, str) and theirs and theirs.lower() != uuid.lower():
                raise BackendError(
                    "operation-failed",
                    f"another domain named '{name}' ({theirs}) is defined here "
                    f"({defined_path}); the arriving one is {uuid}",
                )
        self.transient_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        written = []
        for n in (incoming, name):
            cfg = XlConfig(f'name = "{n}"\n' + (f'uuid = "{uuid}"\n' if uuid else ""), n)
            dom.write_metadata(cfg)
            self._write_file(self._transient_path(n), cfg.text)
            written.append(n)
        if defined is not None:
            dom.write_metadata(defined)
            self._save_cfg(defined_path, defined)

        def done(running_as: Collection[str]) -> None:
            for n in (incoming, name):
                if n not in running_as:
                    self._forget_transient(n)
            if name not in running_as and old_text is not None:
                with contextlib.suppress(BackendError, OSError):
                    self._write_file(defined_path, old_text)

        return done
