"""Re-reading the configuration file on reload: apply what can change live, refuse the rest.

Before this, ``svirt-admin reload`` re-read UA/PA/ACM only: setting ``acm = yes`` and reloading
answered "ok" while svirtd went on without mandatory access control until restarted.  Now each
reload reads the file again and compares it with what svirtd runs:

* keys in ``config.SVIRTD_LIVE_KEYS`` are taken on at once (the service's configuration is
  replaced, a new UA/PA path goes to the store before it reloads);
* any other key that differs from what svirtd started with is **refused by name**: the reload
  reports it as an error (``svirt-admin reload`` exits 4 and says which keys need a restart),
  ``status`` lists it under ``reload.needs_restart``, and svirtd keeps running with the value
  it started with - never a silent half-application;
* a configuration file that no longer parses or is no longer trusted is reported, and the
  running configuration stays.

Keys given on svirtd's command line (``--socket``) are svirtd's own and are not compared.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from secured_virt.config import (
    SVIRTD_LIVE_KEYS,
    ConfigError,
    load_config,
    svirtd_restart_keys,
)


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigChange:
    """What one reload did with the configuration file."""

    applied: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    error: str | None = None

    def errors(self, path: str, boot) -> list[str]:
        out = []
        if self.error:
            out.append(f"{self.error}; svirtd keeps running with the configuration it has")
        if self.needs_restart:
            keys = ", ".join(self.needs_restart)
            now = ", ".join(f"{k} = {_show(getattr(boot, k))}" for k in self.needs_restart)
            out.append(
                f"{keys} changed in {path}, but svirtd applies "
                f"{'this key' if len(self.needs_restart) == 1 else 'these keys'} only when it "
                f"starts and still runs with {now}; restart svirtd to apply "
                "(e.g. systemctl restart svirtd)"
            )
        return out


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | frozenset):
        return ", ".join(map(str, sorted(value) if isinstance(value, frozenset) else value))
    return str(value)


class Reconfigurer:
    """Holds the configuration svirtd started with and applies a re-read file to a service."""

    def __init__(self, path: str | None, boot, *, pinned: frozenset[str] = frozenset()):
        self.path = path
        self.boot = boot
        self.pinned = pinned

    def apply(self, service) -> ConfigChange:
        """Re-read the file; apply the live keys to ``service``; name the restart keys."""
        if self.path is None or self.boot is None or not hasattr(service, "config"):
            return ConfigChange()
        try:
            new = load_config(self.path, caller_uid=0)
        except ConfigError as exc:
            return ConfigChange(error=f"configuration not re-read: {exc}")
        restart = sorted(
            k
            for k in svirtd_restart_keys() - self.pinned
            if getattr(new, k) != getattr(self.boot, k)
        )
        current = service.config
        keep = {k: getattr(self.boot, k) for k in svirtd_restart_keys()}
        keep.update({k: getattr(current, k) for k in self.pinned if hasattr(current, k)})
        merged = dataclasses.replace(new, **keep)
        applied = sorted(
            k for k in SVIRTD_LIVE_KEYS if getattr(merged, k) != getattr(current, k, None)
        )
        if applied:
            store = getattr(service, "store", None)
            if store is not None and ("ua" in applied or "pa" in applied):
                store.ua_path, store.pa_path = merged.ua, merged.pa
            service.config = merged
        return ConfigChange(tuple(applied), tuple(restart))
