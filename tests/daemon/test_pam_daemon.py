"""PAM through svirtd: the real daemon asks the real client for the caller's password over the
socket, and a real PAM stack (pam_wrapper + pam_matrix) checks it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from svtd_helpers import PY, REPO, Daemon, RealEnv, client_snippet

from secured_virt import client
from secured_virt.requests import Request
from secured_virt.testing import pamwrap
from secured_virt.testing.asuid import setpriv_prefix

pytestmark = pytest.mark.integration

PASSWORD = "alice-pw-7Q"


def pam_svirtd(**conf):
    """A RealEnv (``conf`` for its config) whose svirtd runs under pam_wrapper, svt-alice's
    password being PASSWORD; yields it and stops it afterwards."""
    why = pamwrap.unavailable_reason()
    if why:
        pytest.skip(why)
    env = RealEnv(**conf)
    pw = pamwrap.make_pam_wrapper(env.base / "pam", {"svt-alice": PASSWORD})
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        + pw.child_prelude()
        + "from secured_virt.daemon.server import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [PY, "-I", "-c", code, "--config", str(env.config), "--log-level", "debug"]
    env.d = Daemon(argv, env.base, env.socket).start().wait_ready()
    yield env
    env.d.stop()
    env.cleanup()


@pytest.fixture
def pam_env(tmp_path):
    yield from pam_svirtd(auth_operations="destroy", auth_timeout_minutes=0)


def destroy_as_alice(env, users, src, as_user, answers):
    body = (
        "asked = []\n"
        "answers = json.loads(sys.argv[1])\n"
        "def cb(prompt):\n"
        "    asked.append(prompt)\n"
        "    return answers[len(asked) - 1] if len(asked) <= len(answers) else None\n"
        f"r = client.call({env.socket!r}, Request('destroy', {{'domain': 'alice-web'}}),"
        " password_cb=cb if answers is not None else None)\n"
        "print(json.dumps({'reply': r.to_dict(), 'asked': asked}))\n"
    )
    res = as_user(users["svt-alice"], [*client_snippet(src, body), json.dumps(answers)])
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_right_password_over_the_socket(pam_env, test_users, readable_src, as_user):
    out = destroy_as_alice(pam_env, test_users, readable_src, as_user, [PASSWORD])
    assert out["reply"]["status"] == 0, out
    assert out["asked"] == ["[secured-virt] password for svt-alice: "]
    rec = [r for r in pam_env.audit_records() if r["type"] == "decision"][-1]
    assert rec["verdict"] == "allowed" and "(authenticated)" in rec["rule"]
    # the password is in neither the daemon's log nor the audit log
    assert PASSWORD not in pam_env.d.log()
    assert PASSWORD not in Path(pam_env.audit_log).read_text()


def test_wrong_password_three_tries_then_denied(pam_env, test_users, readable_src, as_user):
    out = destroy_as_alice(pam_env, test_users, readable_src, as_user, ["a", "b", "c", "d"])
    assert out["reply"]["status"] == 3 and out["reply"]["check"] == "pam"
    assert len(out["asked"]) == 3
    rec = [r for r in pam_env.audit_records() if r["type"] == "decision"][-1]
    assert rec["verdict"] == "denied" and rec["check"] == "pam"
    # alice-web is still running
    listing = client.call(pam_env.socket, Request("list", {"all": True})).data["domains"]
    assert {d["name"]: d["state"] for d in listing}["alice-web"] == "running"


def test_no_terminal_means_no_password(pam_env, test_users, readable_src, as_user):
    out = destroy_as_alice(pam_env, test_users, readable_src, as_user, None)
    assert out["reply"]["status"] == 3 and out["reply"]["check"] == "pam"
    assert "requires your password; none was given" in out["reply"]["message"]
    assert os.path.exists(pam_env.socket)


@pytest.fixture
def pam_queue_env(tmp_path):
    """pam_env with one request in the service at a time, one in for 300 ms no longer counting."""
    yield from pam_svirtd(
        auth_operations="destroy",
        auth_timeout_minutes=0,
        svirtd_active_requests=1,
        svirtd_slow_request_ms=300,
    )


def test_a_password_prompt_left_unanswered_holds_up_nobody(pam_queue_env, test_users, readable_src):
    """Attack on the admission queue: with one request let into the service at a time, alice
    asks for a destroy and leaves its password prompt unanswered.  Her request is in the
    service all that time; everyone else's must still be served once it has been in for
    svirtd_slow_request_ms, not when her prompt times out."""
    env = pam_queue_env
    body = (
        "import time\n"
        "def cb(prompt):\n"
        "    print('asked', flush=True)\n"
        "    time.sleep(4)\n"
        "    return None\n"
        f"r = client.call({env.socket!r}, Request('destroy', {{'domain': 'alice-web'}}),"
        " password_cb=cb)\n"
        "print(json.dumps(r.to_dict()))\n"
    )
    alice = subprocess.Popen(
        setpriv_prefix(test_users["svt-alice"]) + client_snippet(readable_src, body),
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    try:
        assert alice.stdout.readline().strip() == "asked"  # her request waits at the prompt
        began = time.monotonic()
        listing = client.call(env.socket, Request("list", {"all": True}))
        took = time.monotonic() - began
        assert listing.status == 0, listing.message
        assert took < 2.5, f"list waited {took:.2f} s behind an unanswered password prompt"
        adm = client.admin_status(env.socket).data["daemon"]["admission"]
        assert adm["limit"] == 1 and adm["outlived_slow"] >= 1 and adm["waited"] >= 1
        out, _ = alice.communicate(timeout=30)
    finally:
        if alice.poll() is None:
            alice.kill()
            alice.wait()
    reply = json.loads(out.strip().splitlines()[-1])
    assert reply["status"] == 3 and reply["check"] == "pam"  # no password: refused, as ever
