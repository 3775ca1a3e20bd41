"""The catalogue's monitoring and maintenance operations on libvirt (ids 49-61, 63).

Why a mixin of its own: these calls (memory/block/interface statistics, managed save, core
dump, NMI, keys, description, vCPU pinning, screenshots) are thin wrappers around one libvirt
call each; kept apart, ``libvirt_backend`` stays the lifecycle and device code.  The domain
lookups, error translation and pinning are LibvirtBackend's (``_do``, ``_translate``).
"""

from __future__ import annotations

import libvirt

from .base import BackendError

#: virsh's names of the memoryStats keys, in virsh dommemstat's order
_MEMSTAT_ORDER = (
    "swap_in",
    "swap_out",
    "major_fault",
    "minor_fault",
    "unused",
    "available",
    "actual",
    "usable",
    "last_update",
    "disk_caches",
    "hugetlb_pgalloc",
    "hugetlb_pgfail",
    "rss",
)
_BLKSTAT = ("rd_req", "rd_bytes", "wr_req", "wr_bytes", "errs")
_IFSTAT = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets", "tx_errs",
           "tx_drop")  # fmt: skip
_CODESETS = {
    "linux": libvirt.VIR_KEYCODE_SET_LINUX,
    "xt": libvirt.VIR_KEYCODE_SET_XT,
    "atset1": libvirt.VIR_KEYCODE_SET_ATSET1,
    "atset2": libvirt.VIR_KEYCODE_SET_ATSET2,
    "atset3": libvirt.VIR_KEYCODE_SET_ATSET3,
    "osx": libvirt.VIR_KEYCODE_SET_OSX,
    "xt_kbd": libvirt.VIR_KEYCODE_SET_XT_KBD,
    "usb": libvirt.VIR_KEYCODE_SET_USB,
    "win32": libvirt.VIR_KEYCODE_SET_WIN32,
    "qnum": libvirt.VIR_KEYCODE_SET_QNUM,
}


def _flags(live: bool, config: bool) -> int:
    f = 0
    if live:
        f |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    if config:
        f |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return f


class LibvirtHostInfo:
    """Mixed into LibvirtBackend."""

    def dommemstat(self, name: str) -> dict[str, int]:
        def stats(dom):
            raw = dom.memoryStats()
            return {k: int(raw[k]) for k in _MEMSTAT_ORDER if k in raw}

        return self._do("get memory statistics of", name, stats)

    def domblkstat(self, name: str, device: str) -> dict[str, int]:
        def stats(dom):
            return dict(zip(_BLKSTAT, (int(x) for x in dom.blockStats(device)), strict=False))

        return self._do("get block statistics of", name, stats)

    def domifstat(self, name: str, device: str) -> dict[str, int]:
        def stats(dom):
            return dict(zip(_IFSTAT, (int(x) for x in dom.interfaceStats(device)), strict=True))

        return self._do("get interface statistics of", name, stats)

    def managed_save(self, name: str) -> None:
        self._changing("save", name, lambda dom: dom.managedSave(0))

    def managed_save_remove(self, name: str) -> bool:
        def remove(dom):
            if not dom.hasManagedSaveImage(0):
                return False
            dom.managedSaveRemove(0)
            return True

        return self._changing("remove the managed save image of", name, remove)

    def dump(self, name: str, path: str, *, memory_only: bool = False) -> None:
        flags = libvirt.VIR_DUMP_MEMORY_ONLY if memory_only else 0
        self._changing("dump", name, lambda dom: dom.coreDump(path, flags))

    def inject_nmi(self, name: str) -> None:
        self._do("inject an NMI into", name, lambda dom: dom.injectNMI(0))

    def send_key(self, name: str, keys: list[int], *, codeset: str, holdtime: int) -> None:
        code = _CODESETS.get(codeset)
        if code is None:
            raise BackendError(
                "invalid-arg", f"unknown codeset {codeset!r} (use {', '.join(_CODESETS)})"
            )
        self._do("send keys to", name, lambda dom: dom.sendKey(code, holdtime, keys, len(keys), 0))

    def get_description(self, name: str, *, title: bool = False, inactive: bool = False) -> str:
        kind = (
            libvirt.VIR_DOMAIN_METADATA_TITLE if title else libvirt.VIR_DOMAIN_METADATA_DESCRIPTION
        )
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if inactive else 0

        def get(dom):
            try:
                return dom.metadata(kind, None, flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    return ""
                raise

        return self._do("read the description of", name, get)

    def set_description(
        self, name: str, text: str, *, title: bool = False, live: bool = True, config: bool = True
    ) -> None:
        kind = (
            libvirt.VIR_DOMAIN_METADATA_TITLE if title else libvirt.VIR_DOMAIN_METADATA_DESCRIPTION
        )

        def put(dom):
            flags = _flags(live and dom.isActive(), config and dom.isPersistent())
            dom.setMetadata(kind, text or None, None, None, flags)

        self._do("change the description of", name, put)

    def vcpupin(
        self, name: str, vcpu: int, cpus: tuple[int, ...], *, live: bool, config: bool
    ) -> None:
        def pin(dom):
            ncpus = self.connection.getInfo()[2]
            bad = [c for c in cpus if c >= ncpus]
            if bad:
                raise BackendError(
                    "invalid-arg", f"host CPU(s) {bad} do not exist (the host has {ncpus})"
                )
            cpumap = tuple(i in cpus for i in range(ncpus))
            if live and not config and dom.isActive():
                dom.pinVcpu(vcpu, cpumap)  # the running domain only (every driver has it)
            else:
                dom.pinVcpuFlags(vcpu, cpumap, _flags(live and dom.isActive(), config))

        self._do("pin a vCPU of", name, pin)

    def vcpu_pin_info(self, name: str) -> list[tuple[int, tuple[int, ...]]]:
        def info(dom):
            flags = 0 if dom.isActive() else libvirt.VIR_DOMAIN_AFFECT_CONFIG
            return [
                (i, tuple(c for c, on in enumerate(row) if on))
                for i, row in enumerate(dom.vcpuPinInfo(flags))
            ]

        return self._do("read the vCPU pinning of", name, info)

    def screenshot(self, name: str, screen: int = 0) -> tuple[str, bytes]:
        def shot(dom):
            stream = self.connection.newStream(0)
            try:
                mime = dom.screenshot(stream, screen, 0)
                chunks = []
                while True:
                    data = stream.recv(262144)
                    if not data:
                        break
                    chunks.append(data)
                stream.finish()
            except Exception:
                stream.abort()
                raise
            return mime, b"".join(chunks)

        return self._do("take a screenshot of", name, shot)
