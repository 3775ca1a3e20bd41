"""The Xen backend: every operation through the ``xl`` command, never through a shell.

XlBackend is the façade the rest of secured-virt imports (``open_backend("xl", ...)``); its
code is split by job into modules that can each be read on their own:

* xl_args - checks on every operand (domain names, migration hosts, paths, sizes);
* xl_run - the one place a process is started (argv, ``--``, scrubbed env, timeout) and what
  xl's failures mean;
* xl_files - the per-domain config files: trusted reads, atomic writes, autostart links;
* xl_core - the settings of one backend, joining xl_run and xl_files (XlCore);
* xl_listing - list_domains, lookup, pinned, hostinfo;
* xl_lifecycle - start/stop, define/undefine/create, dumpxml, autostart;
* xl_devices - memory, vCPUs, disks and interfaces, live and/or in the config;
* xl_save - save, restore and migrate;
* xl_labels - owner and ACM label in the config file (get_metadata/set_metadata);
* xl_hostinfo - statistics, NMI, core dumps, vCPU pinning (what xl has of them);
* xl_cfg, xl_model, xl_parse - the xl.cfg language, domain model and xl output parsers.

What is left here is what xl cannot do.  Not available with xl: snapshots, libvirt networks
(interfaces are bridged), shareable disks, a console stream for the daemon (``console_argv``
gives the ``xl console`` command to run interactively), and "persistent" migration (xl
cannot define the domain on the target).
"""

from __future__ import annotations

from .base import BackendError, SnapshotInfo
from .xl_args import check_name, migrate_host
from .xl_devices import XlDevices
from .xl_files import DEFAULT_CONFIG_DIR, DEFAULT_TRANSIENT_DIR
from .xl_hostinfo import XlHostInfo
from .xl_labels import XlLabels
from .xl_listing import DOM0_UUID
from .xl_run import DEFAULT_XL, XL_ENV
from .xl_save import XlSave

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_TRANSIENT_DIR",
    "DEFAULT_XL",
    "DOM0_UUID",
    "XL_ENV",
    "XlBackend",
    "check_name",
    "migrate_host",
]


class XlBackend(XlSave, XlDevices, XlLabels, XlHostInfo):
    """Backend driving Xen's ``xl`` (needs root on a Xen dom0; tests mock ``subprocess.run``
    in xl_run).  Constructed as XlCore: ``XlBackend(uri, xl_path=..., xl_config_dir=...,
    xl_auto_dir=..., xl_transient_dir=..., timeout=..., long_timeout=...)``."""

    # -- snapshots: not in xl -------------------------------------------------------------
    def _no_snapshots(self, name: str):
        check_name(name)
        return BackendError(
            "unsupported",
            f"cannot snapshot domain '{name}': xl has no snapshots (use save/restore, or "
            "snapshots of the disks' storage)",
        )

    def snapshot_create_as(
        self, name: str, snap_name: str | None = None, description: str | None = None
    ) -> str:
        raise self._no_snapshots(name)

    def snapshot_list(self, name: str) -> list[SnapshotInfo]:
        raise self._no_snapshots(name)

    def snapshot_revert(self, name: str, snap: str) -> None:
        raise self._no_snapshots(name)

    def snapshot_delete(self, name: str, snap: str) -> None:
        raise self._no_snapshots(name)

    # -- storage pools and volumes: not in xl ----------------------------------------------
    @staticmethod
    def _no_storage() -> BackendError:
        return BackendError(
            "unsupported",
            "xl has no storage pools or volumes: a realm's images on Xen are files root "
            "creates in the realm's directory (svirsh vol-* needs the libvirt backend)",
        )

    def pool_info(self, pool: str):
        raise self._no_storage()

    def ensure_dir_pool(self, pool: str, path: str):
        raise self._no_storage()

    def vol_list(self, pool: str, *, refresh: bool = False):
        raise self._no_storage()

    def vol_info(self, pool: str, name: str):
        raise self._no_storage()

    def vol_by_path(self, path: str):
        raise self._no_storage()

    def vol_create_as(
        self,
        pool: str,
        name: str,
        capacity: int,
        *,
        allocation: int | None = None,
        fmt: str | None = None,
        owner: tuple[int, int] | None = None,
    ):
        raise self._no_storage()

    def vol_delete(self, pool: str, name: str) -> None:
        raise self._no_storage()

    # -- console --------------------------------------------------------------------------
    def console_argv(self, name: str) -> list[str]:
        """The command that attaches a terminal to the domain's console (run as root)."""
        return [self.xl_path, "console", "--", check_name(name)]

    def open_console(self, name: str):
        check_name(name)
        raise BackendError(
            "unsupported",
            f"cannot open the console of domain '{name}' through the xl backend: run "
            f"`{' '.join(self.console_argv(name))}` as root",
        )

    def close(self) -> None:
        """Nothing to close: every call is its own xl process."""
