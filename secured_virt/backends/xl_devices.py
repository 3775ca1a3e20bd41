"""Changing a domain's hardware: memory, vCPUs, disks and bridge interfaces.

Each change can go to the running domain (an xl command), to its config file (an edit that
keeps everything else in the file), or both, following virsh's ``--live``/``--config``
flags; neither flag means "the domain as it is now" (``_targets``).  The values are checked
here before they reach xl: disks become one ``format=,vdev=,access=,target=`` spec, and
interfaces can only be bridged, because Xen has no libvirt networks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from . import domxml
from .base import BackendError, NoSuchDomain
from .xl_args import check_name, positive, size_arg, whole_mib
from .xl_cfg import XlConfig
from .xl_core import XlCore
from .xl_model import XlDisk, XlDomain, XlNic

_FORMAT = re.compile(r"^[a-z0-9]{1,16}\Z")
_BRIDGE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")


class XlDevices(XlCore):
    """Resources and devices, live and/or in the config (part of XlBackend)."""

    # -- resources ------------------------------------------------------------------------
    def _targets(self, name: str, live: bool, config: bool) -> tuple[bool, bool]:
        """(change the running domain, change the config) - neither given means current."""
        if not live and not config:
            return (True, False) if self._running(name) else (False, True)
        return live, config

    def _edit_config(self, name: str, edit: Callable[[XlConfig], None]) -> None:
        path, cfg = self._require_config(name)
        edit(cfg)
        self._save_cfg(path, cfg)

    def _edit_devices(self, name: str, change: Callable[[XlDomain], None]) -> None:
        """Change the disk and interface lists of the domain's config file: ``change`` gets
        them as an XlDomain (and raises to refuse); they are written back in place, every
        other setting of the file kept as it was."""

        def edit(cfg: XlConfig) -> None:
            dom = XlDomain.from_config(cfg)
            change(dom)
            dom.write_devices(cfg)

        self._edit_config(name, edit)

    def setmem(self, name: str, kib: int, *, live: bool = True, config: bool = False) -> None:
        check_name(name)
        positive(kib, "memory size (KiB)")
        do_live, do_config = self._targets(name, live, config)
        if do_config:
            mib = whole_mib(kib)

            def edit(cfg: XlConfig) -> None:
                maxmem = cfg.get("maxmem")
                if isinstance(maxmem, int) and mib > maxmem:
                    raise BackendError(
                        "invalid-arg",
                        f"cannot set memory of domain '{name}' to {mib} MiB: above its "
                        f"maximum ({maxmem} MiB)",
                    )
                cfg.set("memory", mib)

            self._edit_config(name, edit)
        if do_live:
            self._xl("change the memory of", name, ["mem-set", "--", name, size_arg(kib)])

    def setmaxmem(self, name: str, kib: int, *, config: bool = True) -> None:
        check_name(name)
        positive(kib, "memory size (KiB)")
        if config:
            mib = whole_mib(kib)
            self._edit_config(name, lambda cfg: cfg.set("maxmem", mib))
        else:
            self._xl("change the maximum memory of", name, ["mem-max", "--", name, size_arg(kib)])

    def setvcpus(self, name: str, count: int, *, live: bool = True, config: bool = False) -> None:
        check_name(name)
        positive(count, "vCPU count")
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def edit(cfg: XlConfig) -> None:
                maxv = cfg.get("maxvcpus")
                if isinstance(maxv, int) and count > maxv:
                    raise BackendError(
                        "invalid-arg",
                        f"cannot give domain '{name}' {count} vCPUs: its maximum is {maxv}",
                    )
                cfg.set("vcpus", count)

            self._edit_config(name, edit)
        if do_live:
            self._xl("change the vCPUs of", name, ["vcpu-set", "--", name, str(count)])

    # -- devices --------------------------------------------------------------------------
    def attach_disk(
        self,
        name: str,
        source: str,
        target: str,
        *,
        driver: str | None = None,
        subdriver: str | None = None,
        type: str = "file",
        mode: str | None = None,
        live: bool = True,
        config: bool = False,
        dac_norelabel: bool = False,
    ) -> None:
        """``xl block-attach -- NAME 'format=F,vdev=T,access=A,target=SOURCE'`` (live) and/or a
        new entry in the config's disk list.  ``driver`` has no xl meaning and is ignored, and
        so is ``dac_norelabel`` (xl relabels nothing: libvirt's DAC driver is not involved)."""
        check_name(name)
        domxml.check_target(target)
        if type not in ("file", "block"):
            raise BackendError("invalid-arg", f"invalid disk type {type!r}: use file or block")
        if mode not in (None, "readonly", "shareable"):
            raise BackendError("invalid-arg", f"invalid disk mode {mode!r}")
        if mode == "shareable":
            raise BackendError("unsupported", "the xl backend cannot attach shareable disks")
        if not isinstance(source, str) or not source or "\n" in source or "\x00" in source:
            raise BackendError("invalid-arg", f"invalid disk source {source!r}")
        fmt = subdriver or "raw"
        if not _FORMAT.match(fmt):
            raise BackendError("invalid-arg", f"invalid disk format {fmt!r}")
        disk = XlDisk(
            vdev=target,
            target=source,
            format=fmt,
            readonly=mode == "readonly",
            block=type == "block",
        )
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def change(dom: XlDomain) -> None:
                if any(d.vdev == target for d in dom.disks):
                    raise BackendError(
                        "operation-failed",
                        f"cannot attach a disk to domain '{name}': target {target} already exists",
                    )
                dom.disks.append(disk)

            self._edit_devices(name, change)
        if do_live:
            self._xl("attach a disk to", name, ["block-attach", "--", name, disk.spec()])

    def detach_disk(
        self, name: str, target: str, *, live: bool = True, config: bool = False
    ) -> None:
        check_name(name)
        domxml.check_target(target)
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def change(dom: XlDomain) -> None:
                kept = [d for d in dom.disks if d.vdev != target]
                if len(kept) == len(dom.disks):
                    raise BackendError(
                        "operation-failed", f"domain '{name}' has no disk with target '{target}'"
                    )
                dom.disks = kept

            self._edit_devices(name, change)
        if do_live:
            self._xl("detach a disk from", name, ["block-detach", "--", name, target])

    @staticmethod
    def _check_itype(itype: str) -> None:
        if itype != "bridge":
            raise BackendError(
                "unsupported",
                f"the xl backend cannot use interface type {itype!r}: Xen has no libvirt "
                "networks, attach to a bridge (type bridge, source = bridge name)",
            )

    def attach_interface(
        self,
        name: str,
        itype: str,
        source: str,
        *,
        mac: str | None = None,
        model: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None:
        check_name(name)
        self._check_itype(itype)
        if not isinstance(source, str) or not _BRIDGE.match(source):
            raise BackendError("invalid-arg", f"invalid bridge name {source!r}")
        if model is not None and not re.match(r"^[A-Za-z0-9_-]{1,32}\Z", model):
            raise BackendError("invalid-arg", f"invalid interface model {model!r}")
        nic = XlNic(bridge=source, mac=domxml.check_mac(mac) if mac else None, model=model)
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def change(dom: XlDomain) -> None:
                if nic.mac and any(n.mac == nic.mac for n in dom.nics):
                    raise BackendError(
                        "operation-failed",
                        f"domain '{name}' already has an interface with MAC {nic.mac}",
                    )
                dom.nics.append(nic)

            self._edit_devices(name, change)
        if do_live:
            self._xl(
                "attach an interface to", name, ["network-attach", "--", name, *nic.spec_parts()]
            )

    def detach_interface(
        self,
        name: str,
        itype: str,
        *,
        mac: str | None = None,
        live: bool = True,
        config: bool = False,
    ) -> None:
        check_name(name)
        self._check_itype(itype)
        mac = domxml.check_mac(mac) if mac else None
        do_live, do_config = self._targets(name, live, config)
        if do_config:

            def change(dom: XlDomain) -> None:
                victim = _pick_nic(name, dom.nics, mac)
                dom.nics = [n for n in dom.nics if n is not victim]

            self._edit_devices(name, change)
        if do_live:
            live_mac = mac
            if live_mac is None:
                details = self._details(name)
                nics = next(iter(details.values())).nics if details else []
                live_mac = _pick_nic(name, nics, None).mac
                if not live_mac:
                    raise BackendError(
                        "operation-failed", f"cannot tell the MAC address of '{name}'s interface"
                    )
            self._xl("detach an interface from", name, ["network-detach", "--", name, live_mac])

    def disk_sources(self, name: str) -> list[str]:
        return [d.target for d in self._current(name).disks if d.target]

    def interface_sources(self, name: str) -> list[tuple[str, str]]:
        return [("bridge", n.bridge) for n in self._current(name).nics]

    def _current(self, name: str) -> XlDomain:
        """The running domain's devices if it runs, else its config's."""
        check_name(name)
        if self._running(name):
            details = self._details(name)
            if details:
                return next(iter(details.values()))
        found = self._any_config(name, running=False)
        if found is None:
            raise NoSuchDomain(name)
        return XlDomain.from_config(found[1])


def _pick_nic(name: str, nics: list[XlNic], mac: str | None) -> XlNic:
    if mac:
        for n in nics:
            if (n.mac or "").lower() == mac:
                return n
        raise BackendError("operation-failed", f"domain '{name}' has no interface with MAC {mac}")
    if not nics:
        raise BackendError("operation-failed", f"domain '{name}' has no bridge interface")
    if len(nics) > 1:
        raise BackendError(
            "invalid-arg",
            f"domain '{name}' has {len(nics)} bridge interfaces: give the MAC address (--mac) "
            "of the one to detach",
        )
    return nics[0]
