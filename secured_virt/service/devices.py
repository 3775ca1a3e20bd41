"""Changing what a domain has: memory, vCPUs, disks and interfaces (attach/detach).

Disks attached by anyone but root acting as themselves pass the disk fence
(``secured_virt.confinement.disks``) after the audited decision.
"""

from __future__ import annotations

from secured_virt.access.gate import acting_as
from secured_virt.backends import domxml
from secured_virt.confinement import disks
from secured_virt.requests import EXIT_DENIED

from .errors import UserError
from .support import _say, _size


class DeviceCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

    def _flags(self, args) -> dict:
        """virsh's --live/--config/--persistent; none of them means --current (the running
        domain if it runs, else its persistent configuration), which backends take as both
        flags False."""
        live = bool(args.get("live"))
        config = bool(args.get("config") or args.get("persistent"))
        return {"live": live, "config": config}

    def _cmd_setmem(self, ident, args, interaction):
        name, kib = args.get("domain"), _size(args.get("size"))
        return self._run(
            ident,
            "setmem",
            name,
            interaction,
            _say("", lambda: self.backend.setmem(name, kib, **self._flags(args))),
        )

    def _cmd_setmaxmem(self, ident, args, interaction):
        name, kib = args.get("domain"), _size(args.get("size"))
        return self._run(
            ident,
            "setmaxmem",
            name,
            interaction,
            _say("", lambda: self.backend.setmaxmem(name, kib, config=True)),
        )

    def _cmd_setvcpus(self, ident, args, interaction):
        name = args.get("domain")
        try:
            count = int(args.get("count"))
        except (TypeError, ValueError):
            raise UserError(f"invalid vCPU count '{args.get('count')}'") from None
        return self._run(
            ident,
            "setvcpus",
            name,
            interaction,
            _say("", lambda: self.backend.setvcpus(name, count, **self._flags(args))),
        )

    @staticmethod
    def _privileged(ident) -> bool:
        """Root acting as itself: the one caller whose domain XML and disks are not limited
        (root acting --as a user is limited like that user)."""
        return ident.uid == 0 and acting_as(ident) is None

    def _disk_dirs(self) -> tuple[str, ...]:
        return tuple(getattr(self.config, "disk_dirs", ()) or ())

    def _cmd_attach_disk(self, ident, args, interaction):
        name = args.get("domain")
        kw = {k: args.get(k) for k in ("driver", "subdriver", "mode") if args.get(k)}
        if args.get("type"):
            kw["type"] = args["type"]
        privileged = self._privileged(ident)

        def act(info):
            if not privileged:  # after the (audited) decision, so a refusal is on record
                try:
                    disk = domxml.disk_element(args.get("source"), args.get("target"), **kw)
                    disks.check_disk(disk, self._disk_dirs())
                except disks.DiskPolicyError as exc:
                    raise UserError(f"attach-disk: {exc}", EXIT_DENIED) from None
            self.backend.attach_disk(
                name, args["source"], args["target"], **kw, **self._flags(args)
            )
            return {"message": "Disk attached successfully"}

        return self._run(ident, "attach-disk", name, interaction, act)

    def _cmd_detach_disk(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "detach-disk",
            name,
            interaction,
            _say(
                "Disk detached successfully",
                lambda: self.backend.detach_disk(name, args["target"], **self._flags(args)),
            ),
        )

    def _cmd_attach_interface(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "attach-interface",
            name,
            interaction,
            _say(
                "Interface attached successfully",
                lambda: self.backend.attach_interface(
                    name,
                    args["type"],
                    args["source"],
                    mac=args.get("mac"),
                    model=args.get("model"),
                    **self._flags(args),
                ),
            ),
        )

    def _cmd_detach_interface(self, ident, args, interaction):
        name = args.get("domain")
        return self._run(
            ident,
            "detach-interface",
            name,
            interaction,
            _say(
                "Interface detached successfully",
                lambda: self.backend.detach_interface(
                    name, args["type"], mac=args.get("mac"), **self._flags(args)
                ),
            ),
        )
