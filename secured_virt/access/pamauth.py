"""Password checks through PAM (python-pam), for operations that need fresh authentication.

Like sudo, the caller proves who they are with *their own* password; the PAM service
(``pam_service``, default ``secured-virt``, see ``etc/pam.d/secured-virt``) decides how.

Authentication is not enough: an expired or locked account must be refused even with the
right password, which is PAM's *account management* step.  python-pam's ``authenticate`` runs
``pam_authenticate`` and then ``pam_acct_mgmt``; we call ``pam_acct_mgmt`` once more ourselves
on the same handle before ``pam_end``, so that the rule holds here regardless of how a future
python-pam orders its calls.  ``pam_setcred`` is not called (``resetcreds=False``): we only
verify a password, we do not log anyone in.

Known limits: python-pam sets ``PAM_TTY`` from ``$DISPLAY`` or the tty on fd 0 of *this*
process (``harden_process`` removes DISPLAY; in svirtd fd 0 is /dev/null, so no PAM_TTY is
set for peers).  The password is a Python str and cannot be wiped from memory; core dumps are
disabled by ``harden_process``.

Tests run against a real PAM stack (pam_wrapper + pam_matrix).  python-pam loads libpam with
``ctypes.CDLL(find_library("pam"))``, which an LD_PRELOAD cannot redirect, so the test fixtures
call ``use_pam_library(path_to_libpam_wrapper)``.  Nothing in the production code paths calls
it, and no environment variable or config key reaches it.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PAM_AUTH_ERR", "PAM_SYSTEM_ERR", "AuthResult", "authenticate", "use_pam_library"]

PAM_SUCCESS = 0
PAM_SYSTEM_ERR = 4
PAM_AUTH_ERR = 7
MAX_PASSWORD_BYTES = 4096

_swap_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of one PAM conversation: ``code`` is the PAM return code (0 = success)."""

    ok: bool
    code: int
    reason: str


def _reason(text) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    return str(text or "")


def authenticate(
    user: str, password: str, service: str, *, lib: Callable | None = None
) -> AuthResult:
    """Check ``password`` for ``user`` with PAM service ``service``, then account management.

    ``lib`` is a factory for python-pam authenticators (default ``pam.pam``); it exists for
    callers that already hold one.  Never raises for a bad password or a PAM failure: the
    result says ok=False and why (fail closed, also when PAM itself cannot be loaded).
    """
    for label, value in (("user name", user), ("password", password), ("service", service)):
        if not isinstance(value, str) or "\x00" in value:
            return AuthResult(False, PAM_AUTH_ERR, f"the {label} is not valid text")
    if len(password.encode("utf-8", "surrogateescape")) > MAX_PASSWORD_BYTES:
        return AuthResult(False, PAM_AUTH_ERR, "the password is too long")
    try:
        if lib is None:
            import pam

            lib = pam.pam
        pa = lib()
    except (OSError, ImportError, AttributeError) as exc:
        return AuthResult(False, PAM_SYSTEM_ERR, f"PAM is not available: {exc}")
    try:
        ok = pa.authenticate(user, password, service=service, resetcreds=False, call_end=False)
        code, reason = int(pa.code), _reason(pa.reason)
        if ok:
            handle = getattr(pa, "handle", None)
            if handle is None or not getattr(handle, "handle", None):
                return AuthResult(False, PAM_SYSTEM_ERR, "PAM handle lost before account check")
            rc = int(pa.pam_acct_mgmt(handle, 0))
            if rc != PAM_SUCCESS:
                pa.code = rc
                return AuthResult(False, rc, _reason(pa.pam_strerror(handle, rc)))
            return AuthResult(True, PAM_SUCCESS, reason or "Success")
        return AuthResult(False, code if code else PAM_AUTH_ERR, reason or "Authentication failure")
    except ValueError as exc:
        return AuthResult(False, PAM_AUTH_ERR, str(exc))
    finally:
        if getattr(pa, "handle", None) is not None:
            pa.end()


def use_pam_library(path: str | None) -> None:
    """TEST ONLY: make python-pam use the PAM library at ``path`` (None = the system libpam).

    python-pam binds libpam's functions once per process, as class attributes of
    PamAuthenticator, from ``CDLL(find_library("pam"))``.  We rebind them from ``path`` and
    then check that ``pam_start`` really comes from that library, so a change inside
    python-pam makes the tests fail loudly instead of silently testing the system PAM stack.
    """
    internals = importlib.import_module("pam.__internals")
    cls = internals.PamAuthenticator
    original = internals.find_library
    target = path if path is not None else original("pam")
    with _swap_lock:
        internals.find_library = lambda name: target if name == "pam" else original(name)
        try:
            cls._libs_ready = False
            cls._ensure_libs()
        finally:
            internals.find_library = original
    want = ctypes.cast(ctypes.CDLL(target).pam_start, ctypes.c_void_p).value
    got = ctypes.cast(cls.pam_start, ctypes.c_void_p).value
    if want != got:
        raise RuntimeError(f"python-pam did not switch to {target}; its internals changed")
