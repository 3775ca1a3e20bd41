"""Storage pools and volumes on libvirt (virStoragePool* / virStorageVol*).

Why libvirt's storage API and not files made by hand: each realm's images live in one
directory pool that libvirt knows (``<pool type='dir'>``), so a volume has one name, one path
and one owner that libvirt itself reports and creates (mode, uid, gid in the volume's
``<permissions>``), and the same code works on the test driver (an in-memory pool) and on a
real libvirtd (real files).  What a volume may be called is checked here too, not only by the
service: the test driver accepts ``../x`` as a volume name and would put it outside the pool.

Mixed into LibvirtBackend, whose ``connection`` and ``_translate`` it uses.
"""

from __future__ import annotations

import os
import re

import libvirt
from lxml import etree

from .base import BackendError, PoolInfo, VolumeInfo


def _escape(text: str) -> str:
    """XML text escaping (xml.sax.saxutils.escape's: & < >).  Not imported from there:
    xml.sax.saxutils loads urllib.request, http, email and ssl (~15 ms of every svirsh in
    direct mode, which loads this backend without ever defining a pool)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: virsh's words for virStorageVolType (virsh-volume.c)
_VOL_TYPES = ("file", "block", "dir", "network", "netdir", "ploop")
#: a volume name: one directory entry, never hidden, never a path
VOL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
POOL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
#: image formats a volume may be created in (the dir backend's common ones)
VOL_FORMATS = ("raw", "qcow2")
#: a realm's pool directory: root's, traversable (QEMU under the realm's uid opens its images
#: by path), not listable by others
POOL_DIR_MODE = 0o711


def check_vol_name(name) -> str:
    if not isinstance(name, str) or not VOL_NAME_RE.fullmatch(name):
        raise BackendError(
            "invalid-arg",
            f"invalid volume name {name!r}: letters, digits, '.', '_', '+', '-' (at most 128, "
            "not starting with '.' or '-', no '/')",
        )
    return name


def check_pool_name(name) -> str:
    if not isinstance(name, str) or not POOL_NAME_RE.fullmatch(name):
        raise BackendError("invalid-arg", f"invalid storage pool name {name!r}")
    return name


class LibvirtStorage:
    """Mixed into LibvirtBackend."""

    # -- lookups ------------------------------------------------------------------------------
    def _pool(self, pool: str) -> libvirt.virStoragePool:
        check_pool_name(pool)
        try:
            return self.connection.storagePoolLookupByName(pool)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise BackendError("no-pool", f"storage pool '{pool}' not found") from None
            raise self._translate(exc, action="look up", what=f"storage pool '{pool}'") from None

    def _active_pool(self, pool: str) -> libvirt.virStoragePool:
        p = self._pool(pool)
        try:
            active = bool(p.isActive())
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="look up", what=f"storage pool '{pool}'") from None
        if not active:
            raise BackendError(
                "operation-failed",
                f"storage pool '{pool}' is not active (root: svirt-admin realm storage REALM "
                "starts it)",
            )
        return p

    def _vol(self, pool: str, name: str) -> libvirt.virStorageVol:
        check_vol_name(name)
        p = self._active_pool(pool)
        try:
            return p.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise BackendError(
                    "no-volume", f"no storage volume '{name}' in pool '{pool}'"
                ) from None
            raise self._translate(exc, action="look up", what=f"volume '{name}'") from None

    @staticmethod
    def _vol_data(vol: libvirt.virStorageVol, pool: str) -> VolumeInfo:
        vtype, capacity, allocation = vol.info()
        word = _VOL_TYPES[vtype] if 0 <= vtype < len(_VOL_TYPES) else "unknown"
        return VolumeInfo(vol.name(), vol.path(), word, capacity, allocation, pool)

    def _pool_data(self, p: libvirt.virStoragePool) -> PoolInfo:
        root = etree.fromstring(p.XMLDesc(0).encode())
        _state, capacity, allocation, available = p.info()
        return PoolInfo(
            p.name(),
            root.findtext("target/path"),
            bool(p.isActive()),
            bool(p.autostart()),
            capacity,
            allocation,
            available,
        )

    # -- pools ----------------------------------------------------------------------------------
    def pool_info(self, pool: str) -> PoolInfo:
        p = self._pool(pool)
        try:
            return self._pool_data(p)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="read", what=f"storage pool '{pool}'") from None

    def ensure_dir_pool(self, pool: str, path: str) -> tuple[PoolInfo, list[str]]:
        check_pool_name(pool)
        if not isinstance(path, str) or not os.path.isabs(path) or "\0" in path:
            raise BackendError("invalid-arg", f"pool directory {path!r} must be an absolute path")
        path = os.path.normpath(path)
        done: list[str] = []
        try:
            try:
                p = self.connection.storagePoolLookupByName(pool)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
                xml = (
                    f"<pool type='dir'><name>{_escape(pool)}</name><target>"
                    f"<path>{_escape(path)}</path><permissions><mode>{POOL_DIR_MODE:04o}</mode>"
                    "<owner>0</owner><group>0</group></permissions></target></pool>"
                )
                p = self.connection.storagePoolDefineXML(xml, 0)
                done.append(f"defined directory pool '{pool}' at {path}")
            have = etree.fromstring(p.XMLDesc(0).encode())
            if (
                have.get("type") != "dir"
                or os.path.normpath(have.findtext("target/path") or "") != path
            ):
                raise BackendError(
                    "operation-failed",
                    f"storage pool '{pool}' exists as a {have.get('type')} pool at "
                    f"{have.findtext('target/path')}, not a directory pool at {path}; root must "
                    "rename one of them",
                )
            if not p.isActive():
                p.build(0)  # mkdir with the pool's permissions (a no-op when it exists)
                p.create(0)
                done.append(f"started pool '{pool}'")
            if not p.autostart():
                p.setAutostart(1)
                done.append(f"pool '{pool}' marked as autostarted")
            return self._pool_data(p), done
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="set up", what=f"storage pool '{pool}'") from None

    # -- volumes --------------------------------------------------------------------------------
    def vol_list(self, pool: str, *, refresh: bool = False) -> list[VolumeInfo]:
        p = self._active_pool(pool)
        try:
            if refresh:  # files put in the directory by other means are counted too
                p.refresh(0)
            vols = p.listAllVolumes(0)
            return sorted((self._vol_data(v, pool) for v in vols), key=lambda v: v.name)
        except libvirt.libvirtError as exc:
            raise self._translate(
                exc, action="list the volumes of", what=f"pool '{pool}'"
            ) from None

    def vol_info(self, pool: str, name: str) -> VolumeInfo:
        vol = self._vol(pool, name)
        try:
            return self._vol_data(vol, pool)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="read", what=f"volume '{name}'") from None

    def vol_by_path(self, path: str) -> VolumeInfo:
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise BackendError("invalid-arg", f"invalid volume path {path!r}")
        try:
            vol = self.connection.storageVolLookupByPath(path)
            return self._vol_data(vol, vol.storagePoolLookupByVolume().name())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise BackendError("no-volume", f"no storage volume with path '{path}'") from None
            raise self._translate(exc, action="look up", what=f"volume '{path}'") from None

    def vol_create_as(
        self,
        pool: str,
        name: str,
        capacity: int,
        *,
        allocation: int | None = None,
        fmt: str | None = None,
        owner: tuple[int, int] | None = None,
    ) -> VolumeInfo:
        check_vol_name(name)
        for what, v in (("capacity", capacity), ("allocation", allocation)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise BackendError("invalid-arg", f"invalid {what} {v!r}")
        if fmt is not None and fmt not in VOL_FORMATS:
            raise BackendError(
                "invalid-arg", f"invalid format {fmt!r}: one of {', '.join(VOL_FORMATS)}"
            )
        p = self._active_pool(pool)
        perms = "<permissions><mode>0600</mode>"
        if owner is not None:
            perms += f"<owner>{int(owner[0])}</owner><group>{int(owner[1])}</group>"
        perms += "</permissions>"
        alloc = capacity if allocation is None else allocation
        xml = (
            f"<volume><name>{_escape(name)}</name>"
            f"<capacity unit='bytes'>{capacity}</capacity>"
            f"<allocation unit='bytes'>{alloc}</allocation><target>"
            + (f"<format type='{fmt}'/>" if fmt else "")
            + perms
            + "</target></volume>"
        )
        try:
            vol = p.createXML(xml, 0)
            return self._vol_data(vol, pool)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_STORAGE_VOL_EXIST or (
                "already exists" in (exc.get_error_message() or "")
            ):
                raise BackendError(
                    "operation-failed",
                    f"cannot create volume '{name}': pool '{pool}' already has a volume of "
                    "that name",
                ) from None
            raise self._translate(exc, action="create", what=f"volume '{name}'") from None

    def vol_delete(self, pool: str, name: str) -> None:
        vol = self._vol(pool, name)
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            raise self._translate(exc, action="delete", what=f"volume '{name}'") from None
