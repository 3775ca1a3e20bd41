"""Opening a backend by its kind ("libvirt" or "xl"), as the configuration names it.

Kept out of ``base`` so the interface imports none of its implementations: the concrete
backend module is imported only when that kind is opened, so importing the interface (as the
client side does) never loads the libvirt bindings.
"""

from __future__ import annotations

from typing import Any

from .base import Backend, BackendError

BACKEND_KINDS = ("libvirt", "xl")


def open_backend(kind: str, uri: str | None = None, **opts: Any) -> Backend:
    """Open the backend named ``kind`` ("libvirt" or "xl").

    Options meant for the other kind (e.g. ``xl_path`` given to libvirt) and options whose
    value is None are ignored, so a caller can pass its whole configuration through.  The
    backend module is imported here, lazily, so importing this module never loads libvirt.
    """
    opts = {k: v for k, v in opts.items() if v is not None}
    if kind == "libvirt":
        from .libvirt_backend import LibvirtBackend

        allowed = {"migrate_poll_interval", "watch_events"}
        return LibvirtBackend(uri, **{k: v for k, v in opts.items() if k in allowed})
    if kind == "xl":
        from .xl_backend import XlBackend

        allowed = {
            "xl_path",
            "xl_config_dir",
            "xl_auto_dir",
            "xl_transient_dir",
            "timeout",
            "long_timeout",
        }
        return XlBackend(uri, **{k: v for k, v in opts.items() if k in allowed})
    raise BackendError(
        "invalid-arg",
        f"unknown backend {kind!r}: use one of {', '.join(BACKEND_KINDS)} "
        "(the 'backend' key in secured-virt.conf)",
    )
