"""What every xl operation builds on: one backend's settings, running xl, finding a config.

XlCore joins xl_run (the process) and xl_files (the config files) because the two meet in a
few places every operation needs: an xl failure saying "no such domain" means "not running"
when the domain has a config file; a transient domain's config is the one in the transient
directory only while it runs; and "the devices of NAME" come from ``xl list -l`` or from the
config depending on whether it runs.  The operation groups (xl_listing, xl_lifecycle,
xl_devices, xl_save, xl_labels) are subclasses of XlCore that XlBackend combines.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .base import BackendError, NoSuchDomain
from .xl_cfg import XlConfig
from .xl_files import DEFAULT_CONFIG_DIR, DEFAULT_TRANSIENT_DIR, XlConfigFiles
from .xl_model import XlDomain
from .xl_parse import parse_list_long
from .xl_run import DEFAULT_XL, failure, output_of, run_xl, says_not_found


class XlCore(XlConfigFiles):
    """Settings, the xl runner and config lookup shared by every part of XlBackend."""

    name = "xl"
    #: (policy, label) for a legacy ``ssidref = N`` under the active policy; set by whoever
    #: knows the policy (shype.enforcer), None otherwise (see xl_labels)
    ssidref_resolver = None

    def __init__(
        self,
        uri: str | None = None,
        *,
        xl_path: str = DEFAULT_XL,
        xl_config_dir: str = DEFAULT_CONFIG_DIR,
        xl_auto_dir: str | None = None,
        xl_transient_dir: str = DEFAULT_TRANSIENT_DIR,
        timeout: float = 60.0,
        long_timeout: float = 1800.0,
    ) -> None:
        if not os.path.isabs(xl_path):
            raise BackendError("invalid-arg", f"xl_path {xl_path!r} must be an absolute path")
        super().__init__(
            xl_config_dir=xl_config_dir, xl_auto_dir=xl_auto_dir, xl_transient_dir=xl_transient_dir
        )
        self.uri = uri or "xl:///system"
        self.xl_path = xl_path
        self.timeout = timeout
        self.long_timeout = long_timeout

    # -- running xl -----------------------------------------------------------------------
    def _run(self, args: list[str], *, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``xl ARGS`` with this backend's xl path and timeout (see xl_run.run_xl)."""
        return run_xl(self.xl_path, args, timeout or self.timeout)

    def _xl(self, action: str, name: str | None, args: list[str], **kw) -> str:
        r = self._run(args, **kw)
        if r.returncode != 0:
            raise self._fail(action, name, r)
        return r.stdout

    def _fail(self, action: str, name: str | None, r: subprocess.CompletedProcess) -> BackendError:
        err = output_of(r)
        if name is not None and says_not_found(err):
            if self._config(name) is not None:
                return BackendError("operation-failed", f"domain '{name}' is not running")
            return NoSuchDomain(name)
        return failure(action, name, err)

    def _running(self, name: str) -> bool:
        return self._run(["domid", "--", name]).returncode == 0

    def _details(self, name: str | None = None) -> dict[int, XlDomain]:
        """``xl list -l`` by domain id (empty when xl fails: callers fall back to configs)."""
        args = ["list", "-l"] + (["--", name] if name else [])
        r = self._run(args)
        if r.returncode != 0:
            return {}
        return {
            e["domid"]: XlDomain.from_json(e)
            for e in parse_list_long(r.stdout)
            if isinstance(e.get("domid"), int)
        }

    # -- which config belongs to a domain -------------------------------------------------
    def _any_config(self, name: str, running: bool | None = None) -> tuple[Path, XlConfig] | None:
        """The defined config, else (for a running transient domain) the transient one."""
        path = self._cfg_path(name)
        cfg = self._read_cfg(path)
        if cfg is not None:
            return path, cfg
        if running is None:
            running = self._running(name)
        if running:
            tpath = self._transient_path(name)
            tcfg = self._read_cfg(tpath)
            if tcfg is not None:
                return tpath, tcfg
        return None

    def _require_config(self, name: str) -> tuple[Path, XlConfig]:
        path = self._cfg_path(name)
        cfg = self._read_cfg(path)
        if cfg is None:
            if self._running(name):
                raise BackendError(
                    "operation-failed",
                    f"domain '{name}' has no config file {path}: it is transient "
                    "(define it to keep settings)",
                )
            raise NoSuchDomain(name)
        return path, cfg
