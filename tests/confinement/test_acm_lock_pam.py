"""Issue 14 item 11: the host-wide ACM lock was held during the PAM prompt.

The attack: a user whose start needs a password never answers the prompt; while svirtd waited
for her, it held the host-wide ACM lock, and every other start on the host waited too (58 s
observed, up to 3 x password_timeout).  Now the gate authenticates first, then the service
takes the lock and decides again (RBAC re-checked, ACM checked, nobody prompted under it).

Real PAM stack (pam_wrapper + pam_matrix) in this process, the real Service answering two
users on two threads as svirtd does, sHype/ACM on with the demo policy (test driver).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from mediation_helpers import acm_service, host_config, ident, last_decision, run

from secured_virt.requests import EXIT_OK
from secured_virt.testing import pamwrap

PASSWORDS = {"alice": "alice-pw-11", "bob": "bob-pw-11"}


class Terminal:
    """A client's terminal: answers the password prompt when (and if) it is released."""

    def __init__(self, password: str, answer_now: bool):
        self.password = password
        self.prompted = threading.Event()
        self.release = threading.Event()
        if answer_now:
            self.release.set()
        self.asked = 0

    def ask_password(self, prompt: str) -> str | None:
        self.asked += 1
        self.prompted.set()
        self.release.wait(60)  # the user walked away
        return self.password

    def progress(self, done: int, total: int) -> None:
        pass


@pytest.fixture
def pam(tmp_path):
    why = pamwrap.unavailable_reason()
    if why:
        pytest.skip(why)
    pw = pamwrap.make_pam_wrapper(tmp_path / "pam", PASSWORDS)
    pw.activate()
    yield pw
    pw.deactivate()


@pytest.fixture
def svc(tmp_path, pam):
    cfg = host_config(tmp_path)
    cfg = dataclasses.replace(cfg, auth_operations=frozenset({"start"}), auth_timeout_minutes=0)
    return acm_service(cfg)


def in_thread(fn):
    out = {}

    def body():
        out["reply"] = fn()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def test_an_unanswered_prompt_does_not_block_other_starts(svc):
    alice_tty = Terminal(PASSWORDS["alice"], answer_now=False)
    alice_t, alice = in_thread(
        lambda: svc.handle(ident("alice"), _req("start", "alice-web"), alice_tty)
    )
    assert alice_tty.prompted.wait(10), "alice was never asked for her password"
    try:
        bob_tty = Terminal(PASSWORDS["bob"], answer_now=True)
        bob_t, bob = in_thread(
            lambda: svc.handle(ident("bob", uid=5002), _req("start", "bob-build"), bob_tty)
        )
        bob_t.join(15)
        assert not bob_t.is_alive(), "bob's start waited for alice's password prompt"
        assert bob["reply"].status == EXIT_OK, bob["reply"].message
        assert svc.backend.lookup("bob-build").id is not None
        assert alice_t.is_alive()  # alice is still being asked
    finally:
        alice_tty.release.set()
    alice_t.join(15)
    assert alice["reply"].status == EXIT_OK, alice["reply"].message
    assert alice_tty.asked == 1  # asked once, before the lock; not again under it
    rec = last_decision(svc.config, "start")
    assert rec["user"] == "alice" and "(authenticated)" in rec["rule"]
    assert "ACM demo.hosting" in rec["rule"]  # the ACM check ran, under the lock


def test_a_wrong_password_is_refused_before_the_lock(svc):
    tty = Terminal("not-it", answer_now=True)
    r = svc.handle(ident("alice"), _req("start", "alice-web"), tty)
    assert r.status == 3 and r.check == "pam"
    assert svc.backend.lookup("alice-web").id is None
    assert run(svc, ident("bob", uid=5002), "dominfo", domain="bob-build").ok


def _req(command, domain):
    from secured_virt.requests import Request

    return Request(command, {"domain": domain})
