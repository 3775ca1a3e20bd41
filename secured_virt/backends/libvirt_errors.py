"""Turn libvirt's exceptions into BackendError with words a person can act on.

Importing this module installs a no-op libvirt error handler: by default libvirt prints every
error to stderr ("libvirt: QEMU Driver error : ..."), even ones we handle, which would leak
into svirsh's output.  After this, the only place a libvirt error surfaces is the
BackendError we raise.

It also makes libvirt-python's finalizers keep a pending error (``_keep_pending_errors``):
without that, a garbage collection at the wrong moment makes a failed call's exception say only
"virDomainAttachDeviceFlags() failed", with no code, and svirtd then takes a vanished domain
or an unsupported call for some other failure.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt

from secured_virt.lazylog import lazy_logger

from .base import BackendError, NoSuchDomain

log = lazy_logger(__name__)  # direct mode imports this module and logs nothing


def _silence(_ctx, _err) -> None:
    """Swallow libvirt's default stderr report; the exception carries the same facts."""


libvirt.registerErrorHandler(_silence, None)


# Objects whose finalizer ran while their thread had an error pending, with that finalizer:
# they are freed at the next finalization on a thread with nothing pending.
_deferred: list[tuple[Callable[[object], None], object]] = []


def _keep_pending_errors() -> None:
    """Make the finalizers of libvirt-python's classes wait while an error is pending.

    libvirt keeps the last error per thread, and every public call resets it, virDomainFree
    too. libvirt-python raises ``libvirtError`` in two steps: the C call fails, then the
    exception's ``__init__`` reads the thread's last error. Allocating that exception can start
    a garbage collection, and if the garbage holds a ``virDomain`` (a traceback's frame that
    held a handle is enough), its ``__del__`` calls virDomainFree in between: the error is gone,
    and the exception carries no code and no message. So while this thread has an error
    pending, a finalizer keeps its object (resurrects it, which CPython allows once) instead of
    freeing it, and the next finalizer that runs with no error pending frees it.
    """
    pending = libvirt.libvirtmod.virGetLastError
    for cls in vars(libvirt).values():
        original = vars(cls).get("__del__") if isinstance(cls, type) else None
        if original is None or getattr(original, "keeps_pending_errors", False):
            continue

        def __del__(self, _original=original):
            if pending() is not None:
                _deferred.append((_original, self))
                return
            free_deferred()
            _original(self)

        __del__.keeps_pending_errors = True
        cls.__del__ = __del__


def free_deferred() -> None:
    """Free what finalizers kept while an error was pending.

    Safe from any code but a finalizer (the next libvirt call resets the thread's error
    anyway). The backend calls it before each lookup, so kept objects do not pile up on a
    thread whose finalizers all happen to run while an error is pending.
    """
    while _deferred:
        try:
            finalize, obj = _deferred.pop()
        except IndexError:  # another thread took the last one
            return
        try:
            finalize(obj)
        except Exception as exc:  # as from the finalizer itself: told, never raised in a request
            log.warning("freeing a libvirt object failed: %r", exc)


_keep_pending_errors()

_CODE_MAP = {
    libvirt.VIR_ERR_NO_DOMAIN: "no-domain",
    libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT: "no-snapshot",
    libvirt.VIR_ERR_OPERATION_INVALID: "operation-failed",
    libvirt.VIR_ERR_OPERATION_FAILED: "operation-failed",
    libvirt.VIR_ERR_DOM_EXIST: "operation-failed",
    libvirt.VIR_ERR_RESOURCE_BUSY: "operation-failed",
    libvirt.VIR_ERR_INTERNAL_ERROR: "operation-failed",
    libvirt.VIR_ERR_NO_SUPPORT: "unsupported",
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED: "unsupported",
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "unsupported",
    libvirt.VIR_ERR_INVALID_ARG: "invalid-arg",
    libvirt.VIR_ERR_XML_ERROR: "invalid-arg",
    libvirt.VIR_ERR_XML_DETAIL: "invalid-arg",
    libvirt.VIR_ERR_XML_INVALID_SCHEMA: "invalid-arg",
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: "invalid-arg",
    libvirt.VIR_ERR_NO_NAME: "invalid-arg",
    libvirt.VIR_ERR_NO_SOURCE: "invalid-arg",
    libvirt.VIR_ERR_OPERATION_DENIED: "permission",
    libvirt.VIR_ERR_ACCESS_DENIED: "permission",
    libvirt.VIR_ERR_AUTH_FAILED: "permission",
    libvirt.VIR_ERR_AUTH_CANCELLED: "permission",
    libvirt.VIR_ERR_AUTH_UNAVAILABLE: "permission",
    libvirt.VIR_ERR_NO_CONNECT: "connection",
    libvirt.VIR_ERR_INVALID_CONN: "connection",
    libvirt.VIR_ERR_RPC: "connection",
    libvirt.VIR_ERR_OPERATION_TIMEOUT: "timeout",
}

# Prefixes libvirt puts before the interesting part of a message.
_NOISE = (
    "Requested operation is not valid: ",
    "internal error: ",
    "operation failed: ",
    "this function is not supported by the connection driver: ",
    "argument unsupported: ",
    "invalid argument: ",
    "Operation not supported: ",
)


def error_code(exc: libvirt.libvirtError) -> str:
    return _CODE_MAP.get(exc.get_error_code(), "operation-failed")


def clean_message(exc: libvirt.libvirtError) -> str:
    """libvirt's own message without its category prefix, on one line."""
    msg = (exc.get_error_message() or str(exc) or "unknown libvirt error").strip()
    for prefix in _NOISE:
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
            break
    return " ".join(msg.split())


def translate(
    exc: libvirt.libvirtError,
    *,
    action: str,
    name: str | None = None,
    what: str | None = None,
    driver: str = "",
) -> BackendError:
    """A BackendError for ``exc`` raised while doing ``action`` (e.g. "start") on ``name``.

    ``what`` replaces "domain 'NAME'" in the message when the object is not a domain by name
    (e.g. "domain from '/var/lib/x.save'").
    """
    code = error_code(exc)
    if code == "no-domain" and name is not None:
        return NoSuchDomain(name)
    detail = clean_message(exc)
    where = what or (f"domain '{name}'" if name is not None else "the hypervisor")
    if code == "unsupported":
        drv = f"the {driver} driver" if driver else "this libvirt driver"
        return BackendError(code, f"cannot {action} {where}: {drv} does not support it ({detail})")
    if code == "connection":
        return BackendError(
            code, f"cannot {action} {where}: lost the connection to libvirt ({detail})"
        )
    if code == "permission":
        return BackendError(code, f"cannot {action} {where}: libvirt denied it ({detail})")
    return BackendError(code, f"cannot {action} {where}: {detail}")


def connect_error(exc: libvirt.libvirtError, uri: str) -> BackendError:
    """A BackendError for a failed libvirt.open(uri), with the likely cause and fix."""
    detail = clean_message(exc)
    low = detail.lower()
    hints = []
    if "permission denied" in low or error_code(exc) == "permission":
        hints.append(
            "permission denied: non-root users must go through svirtd or sudo, "
            "not connect to libvirt directly"
        )
    elif "no such file" in low or "failed to connect socket" in low or "connection refused" in low:
        hints.append("is libvirtd running? start it (libvirtd -d) or use svirtd")
    elif uri.startswith("test:"):
        hints.append("check the test driver node file (test:///default needs none)")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return BackendError("connection", f"cannot connect to {uri}: {detail}{hint}")
