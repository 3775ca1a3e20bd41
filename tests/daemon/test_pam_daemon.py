"""PAM through svirtd: the real daemon asks the real client for the caller's password over the
socket, and a real PAM stack (pam_wrapper + pam_matrix) checks it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from svtd_helpers import PY, REPO, Daemon, RealEnv, client_snippet

from secured_virt import client
from secured_virt.requests import Request
from secured_virt.testing import pamwrap

pytestmark = pytest.mark.integration

PASSWORD = "alice-pw-7Q"


@pytest.fixture
def pam_env(tmp_path):
    why = pamwrap.unavailable_reason()
    if why:
        pytest.skip(why)
    env = RealEnv(auth_operations="destroy", auth_timeout_minutes=0)
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
