"""The daemon talking back to the human mid-request: PAM password prompts and progress."""

from __future__ import annotations

import json
import time

import pytest
from svtd_helpers import HELLO, client_snippet, frame, raw_connect, read_frame

from secured_virt import client
from secured_virt.requests import Request

pytestmark = pytest.mark.integration

AUTH = {"type": "request", "request": {"command": "auth"}}


def test_password_round_trip_as_real_user(fake_daemon, test_users, readable_src, as_user):
    body = (
        "prompts = []\n"
        "def cb(p):\n"
        "    prompts.append(p)\n"
        "    return sys.argv[1]\n"
        f"r = client.call({fake_daemon.socket!r}, Request('auth'), password_cb=cb)\n"
        "print(json.dumps({'reply': r.to_dict(), 'prompts': prompts}))\n"
    )
    alice = test_users["svt-alice"]
    ok = as_user(alice, [*client_snippet(readable_src, body), "secret"])
    out = json.loads(ok.stdout)
    assert out["reply"]["status"] == 0
    assert out["prompts"] == ["Password for fake PAM: "]
    bad = json.loads(as_user(alice, [*client_snippet(readable_src, body), "wrong"]).stdout)
    assert bad["reply"]["status"] == 3 and bad["reply"]["check"] == "pam"


def test_no_password_callback_means_no_password(fake_daemon):
    reply = client.call(fake_daemon.socket, Request("auth"), password_cb=None)
    assert reply.status == 3


def test_the_password_never_travels_in_the_request(fake_daemon):
    """The prompt is a frame from the daemon; the answer a frame back - nothing on argv."""
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame(AUTH))
    assert read_frame(s)["type"] == "hello"
    ask = read_frame(s)
    assert ask == {"type": "ask_password", "prompt": "Password for fake PAM: ", "echo": False}
    s.sendall(frame({"type": "password", "password": "secret"}))
    assert read_frame(s)["reply"]["status"] == 0
    # the same connection can carry the next request
    s.sendall(frame({"type": "request", "request": {"command": "whoami"}}))
    assert read_frame(s)["reply"]["data"]["user"] == "root"


def test_client_leaving_at_the_prompt(fake_daemon):
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame(AUTH))
    read_frame(s)
    assert read_frame(s)["type"] == "ask_password"
    s.close()
    reply = client.call(fake_daemon.socket, Request("echo", {"after": 1}))
    assert reply.data == {"after": 1}
    time.sleep(0.2)
    assert "root auth" in (fake_daemon.workdir / "events.log").read_text()


def test_unanswered_prompt_times_out(start_fake_daemon):
    d = start_fake_daemon(password_timeout=1.0)
    s = raw_connect(d.socket)
    s.sendall(frame(HELLO) + frame(AUTH))
    read_frame(s)
    assert read_frame(s)["type"] == "ask_password"
    t0 = time.monotonic()
    err = read_frame(s)
    assert err["type"] == "error" and err["code"] == "timeout"
    assert "no answer to the password prompt within 1s" in err["message"]
    assert time.monotonic() - t0 < 5
    assert client.call(d.socket, Request("echo", {"x": 1})).data == {"x": 1}


def test_wrong_frame_instead_of_password(fake_daemon):
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame(AUTH))
    read_frame(s)
    assert read_frame(s)["type"] == "ask_password"
    s.sendall(frame({"type": "request", "request": {"command": "whoami"}}))
    err = read_frame(s)
    assert err["code"] == "unexpected"
    assert "expected a 'password' frame" in err["message"]


def test_progress_frames_reach_the_callback_in_order(fake_daemon):
    seen = []
    reply = client.call(
        fake_daemon.socket,
        Request("progress", {"steps": 5}),
        progress_cb=lambda done, total: seen.append((done, total)),
    )
    assert reply.status == 0
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
