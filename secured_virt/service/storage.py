"""Commands that move a domain's state to or from storage or another host: save, restore,
migrate, snapshot-create/revert/delete.

Paths root writes for a user stay in that user's save directory; destinations are the ones
root listed.  libvirt (and QEMU) open a save image *by path*, as root, so the directory chain
must be one that only root can change: each user's save directory is root-owned 0700, every
ancestor root-owned and not writable by others (``fsutil.open_secure_dir``), and an entry in it
that is a symlink, not a regular file, foreign-owned or hard-linked is refused
(``fsutil.check_entry``) -- for restore's read as much as for save's write.
"""

from __future__ import annotations

import os
import re

from secured_virt.access.gate import Target
from secured_virt.backends.base import BackendError
from secured_virt.confinement import vmmeta
from secured_virt.fsutil import UnsafeFileError, check_entry, open_secure_dir
from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED

from . import mediation
from .errors import UserError
from .support import _say

#: snapshot states after whose revert the domain runs (libvirt's virDomainSnapshotState words)
_RUNNING_SNAPSHOT_STATES = ("running", "paused", "blocked", "pmsuspended", "shutdown", "crashed")

_SAVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def _after(text: str, path: str) -> str:
    """What a backend error says after its last mention of ``path``: backend and libvirt each
    name the image again ("cannot read the save image 'P': cannot read domain image 'P':
    No such file or directory"), and the message already names it once."""
    i = text.rfind(path)
    tail = text[i + len(path) :].lstrip("'\": ") if i >= 0 else ""
    return tail or text


class StorageCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

    def save_path(self, ident, path: str) -> str:
        """Where a save image may go.  Root (direct or sudo-less) writes where it says; anyone
        else names a file inside their own save directory, so the root daemon can never be
        used to write (or read) an arbitrary host path."""
        if ident.uid == 0:
            return os.path.abspath(path)
        base = os.path.basename(path)
        if path != base or not _SAVE_NAME.match(base):
            raise UserError(
                f"save file '{path}': through svirtd give a plain file name (letters, digits, "
                "'.', '_', '+', '-'); it is kept in your save directory "
                f"{self._user_save_dir(ident.user)}"
            )
        return os.path.join(self._user_save_dir(ident.user), base)

    def _user_save_dir(self, user: str) -> str:
        """``<save_dir>/<user>``: root-owned 0700 (the user reaches it only through svirtd)."""
        root = getattr(self.config, "save_dir", None) or "/var/lib/secured-virt/save"
        return os.path.join(root, user)

    def _check_save_target(self, ident, path: str, *, create: bool) -> None:
        """Refuse a save image path root must not hand to libvirt on ``ident``'s behalf.

        Root's own paths are root's business.  For anyone else the directory is checked (and
        created, for save) on a no-follow fd with every ancestor root-owned and not writable by
        others, and an existing entry must be a plain root-owned file: a symlink planted there
        (to /etc/shadow, to another tenant's image) is never followed."""
        if ident.uid == 0:
            return
        directory, name = os.path.split(path)
        try:
            dfd = open_secure_dir(directory, 0o700, owner_uid=0, create=create)
        except FileNotFoundError:
            raise UserError(
                f"no save image {path} (your save directory is empty)", EXIT_FAILED
            ) from None
        except UnsafeFileError as exc:
            raise UserError(
                f"save directory refused: {exc} (it must be root's alone: root-owned, mode "
                "0700, every directory above it root-owned and not writable by others)",
                EXIT_BAD_POLICY,
            ) from None
        try:
            check_entry(dfd, name, where=path)
        except UnsafeFileError as exc:
            raise UserError(f"save image refused: {exc}", EXIT_FAILED) from None
        finally:
            os.close(dfd)

    def _cmd_save(self, ident, args, interaction):
        name = args.get("domain")
        path = self.save_path(ident, args.get("file") or "")

        def act(info):
            # checked (and created) only once the save is authorized
            self._check_save_target(ident, path, create=True)
            self.backend.save(name, path)
            return {"message": f"Domain '{name}' saved to {path}"}

        return self._run(ident, "save", name, interaction, act, performs=(mediation.SAVE_PATH,))

    def _cmd_restore(self, ident, args, interaction):
        path = self.save_path(ident, args.get("file") or "")
        self._check_save_target(ident, path, create=False)
        try:
            xml = self.backend.saved_image_xml(path)
        except BackendError as exc:
            detail = _after(str(exc), path)
            raise UserError(f"cannot read save image {path}: {detail}", EXIT_FAILED) from None
        try:
            name, uuid, meta = vmmeta.from_domain_xml(xml)
        except vmmeta.DomainXmlError as exc:
            raise UserError(f"save image {path}: {exc}", EXIT_FAILED) from None
        # the label (and owner) the VM has *now* decide and stay, not the image's: a domain
        # relabelled since the save must not come back under its old label
        current = self._current_meta(name, uuid, meta)
        target = Target(name, uuid, current.attrs(), exists=True)
        effect = mediation.Effect(domain_xml=xml, meta=current, running=True)
        return self._gated(
            ident,
            self._op("restore"),
            target,
            interaction,
            _say(f"Domain restored from {path}", lambda: self.backend.restore(path)),
            effect=lambda: effect,
            performs=(mediation.SAVE_PATH,),
        )

    def _current_meta(self, name: str, uuid: str | None, image_meta: vmmeta.VmMeta):
        """The owner and label a VM coming back (restore) has now: those of the defined
        domain with that UUID if it is labelled, else the label bound to the UUID, else what
        the image carries (a label travels with its save image to another host, seed 001)."""
        from secured_virt.shype.bound import BoundLabelsError

        try:
            info = self.backend.lookup(name)
        except BackendError:
            info = None
        local = None
        if info is not None and uuid and info.uuid.lower() == uuid.lower():
            local = self._meta(name)
            if local.label:
                return local
        try:
            rec = self._bound_labels().get(uuid)
        except BoundLabelsError as exc:
            raise UserError(
                f"the labels bound to UUIDs cannot be read: {exc}", EXIT_FAILED
            ) from None
        found = rec[1] if rec is not None else image_meta
        if local is not None and local.owner:
            return vmmeta.VmMeta(
                local.owner, found.label_policy, found.label, realm=local.realm or found.realm
            )
        return found

    def _cmd_migrate(self, ident, args, interaction):
        name, dest = args.get("domain"), args.get("desturi")
        if not dest:
            raise UserError("migrate: a destination URI is required")
        progress = interaction.progress if args.get("verbose") else None

        def act(info):
            if ident.uid != 0:  # after the gate: refused users learn nothing, and it is audited
                self._check_user_destination(dest)
            try:
                self.backend.migrate(
                    name,
                    dest,
                    live=bool(args.get("live")),
                    persistent=bool(args.get("persistent")),
                    undefine_source=bool(args.get("undefinesource")),
                    progress=progress,
                )
            except BackendError as exc:
                if exc.code == "permission":  # the destination refused it (xl: its sHype/ACM)
                    raise UserError(f"migrate: {exc}", EXIT_DENIED) from None
                raise
            return {"message": f"Domain '{name}' migrated to {dest}"}

        acm = self.acm

        def acm_check():
            try:
                ok, text, refusal = acm.check_migration(name, dest)
            except Exception as exc:  # fail closed
                return False, f"cannot check the destination's sHype/ACM policy: {exc}"
            if refusal is not None:  # what runs there is told to root alone
                return False, self._remote_refusal(text, refusal, dest, ident)
            return ok, text

        return self._run(
            ident,
            "migrate",
            name,
            interaction,
            act,
            acm_check if acm is not None else None,
            # the images it takes along must be its realm's (realm_resources)
            effect=lambda info: mediation.Effect(
                domain_xml=self.backend.dumpxml(name), running=info.id is not None
            ),
            performs=(mediation.ACM_DESTINATION, mediation.DESTINATION_LISTED),
        )

    def _check_user_destination(self, dest: str) -> None:
        """A destination URI is opened by root (libvirt's ext transport runs its command=,
        socket=/keyfile= name files, test:///FILE reads and quotes a file), so anyone but root
        may only name a destination root listed in acm_peers."""
        allowed = [uri for uri, _dir in getattr(self.config, "acm_peers", ()) or ()]
        if dest not in allowed:
            raise UserError(
                f"migrate: destination {dest!r} is not one the administrator listed; only "
                "root may migrate elsewhere (root: add it to acm_peers = URI=DIR in "
                "/etc/secured-virt/secured-virt.conf)"
            )

    def _cmd_snapshot_create_as(self, ident, args, interaction):
        name = args.get("domain")

        def act(info):
            snap = self.backend.snapshot_create_as(
                name, args.get("snapshot"), args.get("description")
            )
            return {"message": f"Domain snapshot {snap} created"}

        return self._run(ident, "snapshot-create", name, interaction, act)

    def _cmd_snapshot_revert(self, ident, args, interaction):
        """Revert, mediated as a start from the snapshot's definition under the VM's *current*
        label, which the reverted domain is then given back (the snapshot holds the label it
        had when it was taken)."""
        name, snap = args.get("domain"), args.get("snapshot")
        if not isinstance(snap, str) or not snap:
            raise UserError("snapshot-revert: a snapshot name is required")

        def effect(info):
            read = getattr(self.backend, "snapshot_xml", None)
            if read is None:
                raise BackendError(
                    "unsupported", "this backend cannot show a snapshot's definition"
                )
            state, dom_xml = _snapshot_definition(read(name, snap), name, snap)
            return mediation.Effect(
                domain_xml=dom_xml,
                meta=self._meta(name),
                instantiates=state in _RUNNING_SNAPSHOT_STATES,
                replaces_running=info.id is not None,
                running=info.id is not None,
            )

        return self._run(
            ident,
            "snapshot-revert",
            name,
            interaction,
            _say(
                f"Domain snapshot {snap} reverted", lambda: self.backend.snapshot_revert(name, snap)
            ),
            effect=effect,
        )

    def _cmd_snapshot_delete(self, ident, args, interaction):
        name, snap = args.get("domain"), args.get("snapshot")
        return self._run(
            ident,
            "snapshot-delete",
            name,
            interaction,
            _say(
                f"Domain snapshot {snap} deleted", lambda: self.backend.snapshot_delete(name, snap)
            ),
        )


def _snapshot_definition(snap_xml: str, name: str, snap: str) -> tuple[str, str]:
    """(state, domain XML) of a snapshot's XML description."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(snap_xml.encode(), parser)
    except etree.XMLSyntaxError as exc:
        raise BackendError("operation-failed", f"snapshot {snap} of '{name}': {exc}") from None
    dom = root.find("domain")
    if dom is None:
        raise BackendError(
            "operation-failed",
            f"snapshot {snap} of '{name}' holds no domain definition, so what it would run "
            "cannot be checked; refusing to revert to it",
        )
    return (root.findtext("state") or "").strip(), etree.tostring(dom, encoding="unicode")
