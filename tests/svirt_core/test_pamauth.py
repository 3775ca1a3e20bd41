"""pamauth.py through a real PAM stack: libpam_wrapper + pam_matrix (auth and account)."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib

import pam
import pytest

from secured_virt.access.pamauth import AuthResult, authenticate
from secured_virt.testing.pamwrap import LIBPAM_WRAPPER, make_pam_wrapper, unavailable_reason

SERVICE = "secured-virt"


def test_right_password(pam_stack):
    assert authenticate("svt-alice", "alice-secret", SERVICE) == AuthResult(True, 0, "Success")


def test_wrong_password_is_code_7(pam_stack):
    res = authenticate("svt-alice", "bob-secret", SERVICE)
    assert not res.ok and res.code == pam.PAM_AUTH_ERR == 7
    assert res.reason == "Authentication failure"


def test_unknown_user_fails(pam_stack):
    res = authenticate("svt-nobody", "alice-secret", SERVICE)
    assert not res.ok and res.code != 0


def test_account_management_failure_denies_despite_right_password(pam_stack):
    """svt-expired's password is right, but PAM's account step refuses it."""
    res = authenticate("svt-expired", "expired-secret", SERVICE)
    assert not res.ok
    assert res.code == pam.PAM_PERM_DENIED and res.reason == "Permission denied"
    # ...and the same account would pass on the service its entry names: it is the account
    # step, not the password, that refuses it here
    pam_stack.set_users({"svt-expired": "expired-secret"})
    assert authenticate("svt-expired", "expired-secret", SERVICE).ok


def test_other_service_name_is_not_configured(pam_stack):
    assert not authenticate("svt-alice", "alice-secret", "no-such-service").ok


@pytest.mark.parametrize(
    ("user", "password"), [("svt-alice", "alice\x00secret"), ("svt-al\x00ice", "alice-secret")]
)
def test_nul_bytes_fail_without_exception(pam_stack, user, password):
    res = authenticate(user, password, SERVICE)
    assert not res.ok and res.code == pam.PAM_AUTH_ERR


def test_overlong_password_fails(pam_stack):
    assert not authenticate("svt-alice", "x" * 5000, SERVICE).ok


def test_password_change_in_passdb_takes_effect(pam_stack):
    pam_stack.set_users({"svt-alice": "new-secret"})
    assert not authenticate("svt-alice", "alice-secret", SERVICE).ok
    assert authenticate("svt-alice", "new-secret", SERVICE).ok


def _bound_pam_start() -> int:
    cls = importlib.import_module("pam.__internals").PamAuthenticator
    return ctypes.cast(cls.pam_start, ctypes.c_void_p).value


def _symbol(lib: str) -> int:
    return ctypes.cast(ctypes.CDLL(lib).pam_start, ctypes.c_void_p).value


def test_switching_back_to_the_system_libpam(shared_tmp):
    """deactivate() rebinds python-pam to the system libpam: the wrapper's users are unknown."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    pw = make_pam_wrapper(shared_tmp / "pam2", {"svt-alice": "alice-secret"})
    pw.activate()
    assert _bound_pam_start() == _symbol(LIBPAM_WRAPPER)
    assert authenticate("svt-alice", "alice-secret", SERVICE).ok
    pw.deactivate()
    assert _bound_pam_start() == _symbol(ctypes.util.find_library("pam"))
    assert not authenticate("svt-alice", "alice-secret", SERVICE).ok


def test_fresh_interpreter_as_another_uid_uses_the_helper(pam_stack, py_as):
    """What daemon tests will do: child_prelude() in a new process (here as svt-bob)."""
    code = pam_stack.child_prelude() + (
        "import json\n"
        "from secured_virt.access.pamauth import authenticate\n"
        "tries = (('svt-bob', 'bob-secret'), ('svt-bob', 'wrong'),\n"
        "         ('svt-expired', 'expired-secret'))\n"
        "r = [authenticate(u, p, 'secured-virt') for u, p in tries]\n"
        "print(json.dumps([[x.ok, x.code] for x in r]))\n"
    )
    res = py_as("svt-bob", code)
    assert res.returncode == 0, res.stderr
    assert res.data == [[True, 0], [False, 7], [False, 6]]
