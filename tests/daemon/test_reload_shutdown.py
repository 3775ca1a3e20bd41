"""Hot reload (file change, SIGHUP, admin request), reconnection, and clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from svtd_helpers import (
    HELLO,
    call_as,
    client_snippet,
    frame,
    raw_connect,
    read_frame,
    wait_for,
    write_policy,
)

from secured_virt import client
from secured_virt.requests import Request

pytestmark = pytest.mark.integration


def decision(d, user, op, run_as, src):
    return call_as(run_as, user, src, d.socket, op)["status"]


def last_reload(d):
    return client.admin_status(d.socket).data["reload"]["last"]


def test_policy_file_change_is_picked_up(fake_daemon, test_users, readable_src, as_user):
    bob = test_users["svt-bob"]
    assert decision(fake_daemon, bob, "start", as_user, readable_src) == 0
    write_policy(fake_daemon.workdir, {"svt-alice": ["start"]}, version=2)
    wait_for(lambda: (last_reload(fake_daemon) or {}).get("ok"), what="reload")
    last = last_reload(fake_daemon)
    assert last["versions"] == {"fake": 2}
    assert last["trigger"].startswith("changed on disk: ")
    assert decision(fake_daemon, bob, "start", as_user, readable_src) == 3


def test_bad_policy_file_keeps_the_last_good_one(fake_daemon, test_users, readable_src, as_user):
    bob = test_users["svt-bob"]
    (fake_daemon.workdir / "policy.json").write_text('{"version": 3, "allow": ')  # truncated
    wait_for(lambda: last_reload(fake_daemon), what="reload attempt")
    last = last_reload(fake_daemon)
    assert last["ok"] is False
    assert "policy.json" in last["errors"][0]
    # the old policy is still in force: bob may still start, carol still may not
    assert decision(fake_daemon, bob, "start", as_user, readable_src) == 0
    assert decision(fake_daemon, test_users["svt-carol"], "start", as_user, readable_src) == 3
    status = client.admin_status(fake_daemon.socket).data
    assert status["service"]["policy"] == {"fake": 1}
    assert status["counters"]["reloads_failed"] >= 1
    assert "rejected, the previous policy stays in force" in fake_daemon.log()
    # fixing the file is picked up again
    write_policy(fake_daemon.workdir, {"svt-carol": ["start"]}, version=4)
    wait_for(lambda: last_reload(fake_daemon)["ok"], what="good reload")
    assert decision(fake_daemon, test_users["svt-carol"], "start", as_user, readable_src) == 0


def test_sighup_reloads(fake_daemon):
    fake_daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: last_reload(fake_daemon), what="SIGHUP reload")
    assert last_reload(fake_daemon)["trigger"] == "SIGHUP"


def test_admin_reload_and_status_need_root_or_daemon_admin(
    start_fake_daemon, test_users, readable_src, as_user
):
    d = start_fake_daemon(allow={"svt-alice": ["start"]})
    root = client.admin_reload(d.socket)
    assert root.status == 0 and root.data["ok"] and "root" in root.data["trigger"]
    body = f"r = client.admin_status({d.socket!r})\nprint(json.dumps(r.to_dict()))\n"
    res = as_user(test_users["svt-alice"], client_snippet(readable_src, body))
    reply = json.loads(res.stdout)
    assert reply["status"] == 3 and "daemon-admin" in reply["message"]
    # grant the fake's daemon-admin to alice and ask again
    write_policy(d.workdir, {"svt-alice": ["start"]}, version=2)
    policy = json.loads((d.workdir / "policy.json").read_text())
    policy["admins"] = ["svt-alice"]
    (d.workdir / "policy.json").write_text(json.dumps(policy))
    client.admin_reload(d.socket)
    reply = json.loads(as_user(test_users["svt-alice"], client_snippet(readable_src, body)).stdout)
    assert reply["status"] == 0
    data = reply["data"]
    assert data["daemon"]["pid"] == d.proc.pid
    assert data["daemon"]["uptime_s"] >= 0
    assert data["counters"]["requests"] >= 1
    assert data["reload"]["watching"] == [str(d.workdir / "policy.json")]


def test_admin_reload_of_a_bad_file_says_why(fake_daemon):
    (fake_daemon.workdir / "policy.json").write_text("[]")
    reply = client.admin_reload(fake_daemon.socket)
    assert reply.status == 4
    assert "previous one stays in force" in reply.message
    assert "needs an 'allow' object" in reply.message


def test_lost_hypervisor_connection_is_reestablished_once(fake_daemon):
    hv = fake_daemon.workdir / "hypervisor"
    assert client.call(fake_daemon.socket, Request("hv")).status == 0
    hv.write_text("down")
    reply = client.call(fake_daemon.socket, Request("hv"))
    assert reply.status == 1
    assert reply.message.startswith("the connection to the hypervisor was lost")
    assert "reconnecting failed: the connection is closed" in reply.message
    assert reply.message.endswith("the request failed with: lost the connection to libvirt")
    hv.write_text("up")
    assert client.call(fake_daemon.socket, Request("hv")).status == 0
    events = (fake_daemon.workdir / "events.log").read_text()
    assert "reconnect" in events
    status = client.admin_status(fake_daemon.socket).data
    assert status["counters"]["reconnects"] >= 1


def test_sigterm_finishes_in_flight_requests(fake_daemon):
    results = {}

    def slow():
        results["reply"] = client.call(
            fake_daemon.socket, Request("sleep", {"seconds": 1.5}), timeout=10
        )

    idle = raw_connect(fake_daemon.socket)  # greeted and idle: must not hold up the stop
    idle.sendall(frame(HELLO))
    assert read_frame(idle)["type"] == "hello"
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    fake_daemon.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # no new connections once stopping
    with pytest.raises(client.ClientError) as info:
        client.call(fake_daemon.socket, Request("echo"), timeout=2)
    assert info.value.code in ("unavailable", "closed", "shutting-down")
    assert fake_daemon.proc.wait(10) == 0
    t.join()
    assert results["reply"].status == 0 and results["reply"].data == {"slept": 1.5}
    assert time.monotonic() - t0 < 5
    assert read_frame(idle) is None  # the idle connection was closed
    assert not os.path.exists(fake_daemon.socket)
    events = (fake_daemon.workdir / "events.log").read_text().splitlines()
    assert events[-1].startswith("closed after")  # the service (audit) closed last
    assert "root sleep" in events[:-1]


def test_sigterm_deadline_bounds_a_stuck_request(start_fake_daemon):
    d = start_fake_daemon(shutdown_timeout=1.0)
    s = raw_connect(d.socket)
    s.sendall(frame(HELLO))
    read_frame(s)  # alone, the hello is answered at once (with a request behind it, with its reply)
    s.sendall(frame({"type": "request", "request": {"command": "sleep", "args": {"seconds": 30}}}))
    time.sleep(0.3)
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0
    assert time.monotonic() - t0 < 4
    assert "1 request(s) still running after 1s" in d.log()
