"""The caller's own save images: ``save-list`` and ``save-delete``.

Why: through svirtd a save image goes into ``<save_dir>/<user>``, a directory only root can
open (so nobody can plant a link there for root to follow).  Without these commands its owner
could neither see what she saved nor free the space.  They are decided like everything else,
per VM: each image holds a domain definition (name, UUID, owner, label in its metadata), and
the caller may see or delete an image when her roles grant ``save-list`` / ``save-delete`` on
the VM it holds, judged by the owner and label the image carries (so an image of a VM undefined
since still belongs to whoever owned it).  Root lists another user's directory with ``--user``.

The directory is opened on a no-follow fd with every ancestor root's (``open_secure_dir``), each
entry is checked without following links (``check_entry``), and the delete is an ``unlinkat``
on that fd, so nothing can redirect either one.
"""

from __future__ import annotations

import os
import time

from secured_virt.access.gate import Target, acting_as
from secured_virt.backends.base import BackendError
from secured_virt.confinement import vmmeta
from secured_virt.fsutil import UnsafeFileError, check_entry, open_secure_dir
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, Reply

from . import mediation
from .errors import UserError


class SaveImageCommands:
    """Mixed into ``Service`` (see ``facade``)."""

    def _save_dir_of(self, ident, args) -> tuple[str, str]:
        """(user, directory) whose save images a request is about."""
        user = args.get("user")
        if user and user != (acting_as(ident) or ident.user):
            if not (ident.uid == 0 and acting_as(ident) is None):
                raise UserError("--user is root's alone: you manage your own save images")
        else:
            user = acting_as(ident) or ident.user
        return user, self._user_save_dir(user)

    def _image_target(self, path: str) -> Target:
        """The VM an image holds, as the gate sees it (the image's own owner and label).  The
        file, not a domain, is acted on: nothing is pinned to a running VM (it may be gone)."""
        xml = self.backend.saved_image_xml(path)
        name, uuid, meta = vmmeta.from_domain_xml(xml)
        return Target(name, uuid, meta.attrs(), exists=False)

    def _cmd_save_list(self, ident, args, interaction) -> Reply:
        op = self._op("save-list")
        user, directory = self._save_dir_of(ident, args)
        rows, total = [], 0
        try:
            dfd = open_secure_dir(directory, 0o700, owner_uid=0, create=False)
        except FileNotFoundError:
            dfd = None  # nothing saved yet
        except UnsafeFileError as exc:
            raise UserError(f"save directory refused: {exc}", EXIT_FAILED) from None
        if dfd is not None:
            try:
                for name in sorted(os.listdir(dfd)):
                    path = os.path.join(directory, name)
                    try:
                        st = check_entry(dfd, name, where=path)
                    except (UnsafeFileError, ValueError):
                        continue  # not an image root may open: never shown, never read
                    if st is None:
                        continue
                    total += 1
                    try:
                        target = self._image_target(path)
                    except (BackendError, vmmeta.DomainXmlError):
                        target = None  # unreadable: shown to root only
                    if target is None:
                        if ident.uid == 0 and acting_as(ident) is None:
                            rows.append(_row(name, st, None))
                        continue
                    if self.gate.may(ident, op, target):
                        rows.append(_row(name, st, target))
            finally:
                os.close(dfd)
        v = self.gate.authorize_listing(ident, op, len(rows), total)
        if not v.allowed:
            return self._denied(v)
        self.gate.finish(v, "ok")
        return Reply(EXIT_OK, data={"user": user, "directory": directory, "images": rows})

    def _cmd_save_delete(self, ident, args, interaction) -> Reply:
        path = self.save_path(ident, args.get("file") or "")
        self._check_save_target(ident, path, create=False)
        if not os.path.isfile(path):
            raise UserError(f"no save image {args.get('file')!r}", EXIT_FAILED)
        try:
            target = self._image_target(path)
        except (BackendError, vmmeta.DomainXmlError) as exc:
            if ident.uid != 0:
                raise UserError(
                    f"cannot read save image {args.get('file')!r} ({exc}); ask root to remove it",
                    EXIT_FAILED,
                ) from None
            target = Target(os.path.basename(path), None, {}, exists=False)
        directory, name = os.path.split(path)

        def act():
            dfd = open_secure_dir(directory, 0o700, owner_uid=0, create=False)
            try:
                if check_entry(dfd, name, where=path) is None:
                    raise UserError(f"no save image {name!r}", EXIT_FAILED)
                os.unlink(name, dir_fd=dfd)
            except UnsafeFileError as exc:
                raise UserError(f"save image refused: {exc}", EXIT_DENIED) from None
            finally:
                os.close(dfd)
            return {"message": f"Save image {name} deleted"}

        return self._gated(
            ident,
            self._op("save-delete"),
            target,
            interaction,
            act,
            performs=(mediation.SAVE_PATH,),
        )


def _row(name: str, st: os.stat_result, target: Target | None) -> dict:
    row = {
        "file": name,
        "bytes": st.st_size,
        "saved": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)),
        "domain": None,
        "uuid": None,
    }
    if target is not None:
        row["domain"], row["uuid"] = target.name, target.uuid
    return row
