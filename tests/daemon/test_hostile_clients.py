"""Garbage, oversized, truncated, silent, slow and vanishing clients: each is refused or ignored,
and the daemon keeps serving everyone else - including while the abuse is still going on."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
from svtd_helpers import HELLO, PY, frame, raw_connect, read_frame

from secured_virt import client
from secured_virt.requests import Request

pytestmark = pytest.mark.integration

WHOAMI = {"type": "request", "request": {"command": "whoami"}}


def still_serving(d) -> None:
    t0 = time.monotonic()
    reply = client.call(d.socket, Request("echo", {"ping": 1}), timeout=10)
    assert reply.status == 0 and reply.data == {"ping": 1}
    assert time.monotonic() - t0 < 2


def expect_error(sock, code: str, needle: str = "") -> dict:
    msg = read_frame(sock)
    if msg and msg["type"] == "hello":
        msg = read_frame(sock)
    assert msg is not None, "daemon closed without saying why"
    assert msg["type"] == "error", msg
    assert msg["code"] == code, msg
    assert needle in msg["message"]
    assert read_frame(sock) is None  # and the connection is closed
    return msg


@pytest.mark.parametrize(
    ("payload", "code", "needle"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "too-large", "exceeds the limit"),
        (frame(b"not json at all"), "bad-frame", "not valid JSON"),
        (frame(b"[]"), "bad-frame", "JSON object"),
        (frame(b"\x00\x01"), "bad-frame", "JSON"),
        ((1).to_bytes(4, "big") + b"x", "bad-frame", "too small"),
        (frame(b"[" * 50000 + b"]" * 50000), "bad-frame", "too deeply"),
        (frame(b'{"type": "hello", "version": 1e400}'), "bad-frame", "version"),
        (frame({"type": "request", "request": {"command": "x"}}), "unexpected", "'hello'"),
        (frame({"type": "hello", "version": 99}), "version", "version 99 is not supported"),
        (frame({"type": "password", "password": "x"}), "unexpected", "'hello'"),
    ],
)
def test_malformed_first_frames_are_refused(fake_daemon, payload, code, needle):
    s = raw_connect(fake_daemon.socket)
    s.sendall(payload)
    expect_error(s, code, needle)
    still_serving(fake_daemon)


@pytest.mark.parametrize(
    "second",
    [
        {"type": "hello", "version": 1},
        {"type": "password", "password": "hunter2"},
        {"type": "request", "request": {"command": ""}},
        {"type": "request", "request": {"command": "x", "args": []}},
        {"type": "request", "request": {"command": "x", "as_user": 0}},
    ],
)
def test_malformed_later_frames_are_refused(fake_daemon, second):
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame(second))
    assert read_frame(s)["type"] == "hello"
    msg = expect_error(s, "unexpected" if "request" not in second else "bad-frame")
    assert msg["message"]
    still_serving(fake_daemon)


def test_oversized_frame_is_refused_without_reading_it(start_fake_daemon):
    d = start_fake_daemon(request_max_bytes=4096)
    s = raw_connect(d.socket)
    s.sendall(frame(HELLO))
    assert read_frame(s)["type"] == "hello"
    big = frame({"type": "request", "request": {"command": "echo", "args": {"x": "y" * 5000}}})
    s.sendall(big[:100])
    expect_error(s, "too-large", "exceeds the limit of 4096 bytes")
    still_serving(d)
    # just under the limit is fine
    reply = client.call(d.socket, Request("echo", {"x": "y" * 3900}))
    assert reply.status == 0


def test_silent_client_is_dropped_after_the_idle_timeout(start_fake_daemon):
    d = start_fake_daemon(idle_timeout=1.0)
    s = raw_connect(d.socket)
    t0 = time.monotonic()
    still_serving(d)  # served while the silent one holds its connection
    expect_error(s, "timeout", "no hello within 1s")
    assert 0.8 < time.monotonic() - t0 < 5
    # same between requests: a greeted but idle connection is closed too
    s = raw_connect(d.socket)
    s.sendall(frame(HELLO))
    assert read_frame(s)["type"] == "hello"
    expect_error(s, "timeout", "no request within 1s")
    status = client.admin_status(d.socket).data
    assert status["counters"]["idle_timeouts"] == 2


def test_truncated_frame_then_silence_times_out(start_fake_daemon):
    d = start_fake_daemon(idle_timeout=1.0)
    s = raw_connect(d.socket)
    s.sendall((200).to_bytes(4, "big") + b'{"type": "hel')
    expect_error(s, "timeout", "started but not completed within 1s")
    still_serving(d)


def test_slow_trickle_cannot_hold_a_connection(start_fake_daemon):
    d = start_fake_daemon(idle_timeout=1.0)
    s = raw_connect(d.socket)
    body = b'{"type": "hello", "version": 1' + b" " * 100 + b"}"
    s.sendall(len(body).to_bytes(4, "big"))
    t0 = time.monotonic()
    got_error = None
    for b in body:
        try:
            s.sendall(bytes([b]))
        except OSError:
            break
        time.sleep(0.05)
        s.settimeout(0.001)
        try:
            head = s.recv(4, socket.MSG_PEEK)
            if head:
                got_error = True
                break
        except (TimeoutError, BlockingIOError):
            pass
    assert got_error, "the daemon waited for a trickling client longer than the idle timeout"
    assert time.monotonic() - t0 < 3
    s.settimeout(5)
    expect_error(s, "timeout", "not completed")


def test_truncated_frame_and_disconnect_is_ignored(fake_daemon):
    for cut in (2, 4, 10):
        s = raw_connect(fake_daemon.socket)
        s.sendall(frame(HELLO)[:cut])
        s.close()
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame(WHOAMI)[:7])
    s.close()
    still_serving(fake_daemon)
    assert "closed the connection in the middle of a frame" in fake_daemon.log()


def test_client_vanishing_mid_request_does_not_disturb_the_daemon(fake_daemon):
    s = raw_connect(fake_daemon.socket)
    s.sendall(
        frame(HELLO)
        + frame({"type": "request", "request": {"command": "sleep", "args": {"seconds": 0.5}}})
    )
    assert read_frame(s)["type"] == "hello"
    s.close()
    still_serving(fake_daemon)
    time.sleep(1.0)
    still_serving(fake_daemon)
    events = (fake_daemon.workdir / "events.log").read_text()
    assert "root sleep" in events  # the request ran to completion (and would be audited)


def test_client_that_never_reads_its_reply(start_fake_daemon):
    d = start_fake_daemon(write_timeout=1.0)
    s = raw_connect(d.socket)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(
        frame(HELLO)
        + frame({"type": "request", "request": {"command": "big", "args": {"size": 20_000_000}}})
    )
    time.sleep(0.3)
    still_serving(d)
    deadline = time.monotonic() + 10
    while "connection lost" not in d.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "connection lost" in d.log()  # the write timed out; the thread was freed
    s.close()
    still_serving(d)


def test_service_bug_is_an_error_not_a_crash(fake_daemon):
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame({"type": "request", "request": {"command": "crash"}}))
    expect_error(s, "internal", "internal error in svirtd")
    assert "fake service bug" in fake_daemon.log()  # the traceback is in the log
    still_serving(fake_daemon)


GARBAGE = """
import os, socket, sys, time
while True:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[1])
        s.sendall(os.urandom(os.urandom(1)[0] + 1))
        s.close()
    except OSError:
        pass
    time.sleep(0.005)
"""


def test_random_garbage_storm_while_serving(fake_daemon):
    """Processes spraying random bytes over hundreds of connections a second, in parallel
    with normal traffic: every normal request is answered, correctly and promptly."""
    sprayers = [subprocess.Popen([PY, "-I", "-c", GARBAGE, fake_daemon.socket]) for _ in range(3)]
    try:
        time.sleep(1.0)
        latencies = []
        for i in range(50):
            t0 = time.monotonic()
            reply = client.call(fake_daemon.socket, Request("echo", {"i": i}), timeout=10)
            latencies.append(time.monotonic() - t0)
            assert reply.data == {"i": i}
    finally:
        for p in sprayers:
            p.kill()
            p.wait()
    assert fake_daemon.proc.poll() is None
    counters = client.admin_status(fake_daemon.socket).data["counters"]
    assert counters["connections"] > 200  # the storm really happened
    assert counters["protocol_errors"] > 100
    assert sorted(latencies)[25] < 1.0, latencies


def test_connection_limit_per_uid(start_fake_daemon, test_users, readable_src, as_user):
    from svtd_helpers import call_as

    d = start_fake_daemon(max_connections_per_uid=3)
    held = []  # three connections really accepted (a closing earlier one may still count)
    deadline = time.monotonic() + 10
    while len(held) < 3:
        c = raw_connect(d.socket)
        c.sendall(frame(HELLO))
        msg = read_frame(c)
        if msg["type"] == "hello":
            held.append(c)
            continue
        assert msg["code"] == "busy" and time.monotonic() < deadline, msg
        c.close()
        time.sleep(0.05)
    s = raw_connect(d.socket)
    expect_error(s, "busy", "uid 0 already has 3 connections")
    with pytest.raises(client.ClientError) as info:  # the client says so too
        client.call(d.socket, Request("echo"), timeout=5)
    assert info.value.code == "busy" and "already has 3 connections" in str(info.value)
    # another uid is not affected by root's connections
    reply = call_as(as_user, test_users["svt-alice"], readable_src, d.socket, "whoami")
    assert reply["data"]["user"] == "svt-alice"
    held.pop().close()  # once the daemon has noticed, root may connect again
    deadline = time.monotonic() + 10
    while True:
        try:
            still_serving(d)
            break
        except client.ClientError as exc:
            assert exc.code == "busy" and time.monotonic() < deadline, exc
            time.sleep(0.05)
    for h in held:
        h.close()


def test_hostile_clients_do_not_stall_concurrent_requests(start_fake_daemon):
    """With a pile of stuck connections open, normal requests still take milliseconds."""
    d = start_fake_daemon(idle_timeout=5.0)
    stuck = []
    for i in range(30):
        s = raw_connect(d.socket)
        if i % 3 == 1:
            s.sendall((500).to_bytes(4, "big") + b"{")
        elif i % 3 == 2:
            s.sendall(frame(HELLO))
        stuck.append(s)
    latencies = []
    for i in range(20):
        t0 = time.monotonic()
        assert client.call(d.socket, Request("echo", {"i": i})).data == {"i": i}
        latencies.append(time.monotonic() - t0)
    # stalled behind a stuck client would mean waiting out its 5 s idle timeout
    assert max(latencies) < 3.0, latencies
    for s in stuck:
        s.close()


def test_hello_and_request_written_at_once_are_answered_in_one_write(fake_daemon):
    """The client did not wait for the hello, so the hello goes out with the reply (one
    wake-up of the client, not two); same frames, same order."""
    s = raw_connect(fake_daemon.socket)
    request = {"type": "request", "request": {"command": "sleep", "args": {"seconds": 0.3}}}
    s.sendall(frame(HELLO) + frame(request))
    s.settimeout(10)
    first = s.recv(65536)  # whatever arrived first, in one piece
    hello_len = 4 + int.from_bytes(first[:4], "big")
    assert json.loads(first[4:hello_len])["type"] == "hello"
    assert len(first) > hello_len, "the hello was sent alone, ahead of the reply"
    rest = first[hello_len:]
    assert json.loads(rest[4 : 4 + int.from_bytes(rest[:4], "big")])["type"] == "reply"


def test_console_bytes_written_with_the_request_reach_the_guest(fake_daemon):
    """Raw bytes right behind the console frame, in the same write, are the console's: the
    frame reader received them, the relay sends them on."""
    s = raw_connect(fake_daemon.socket)
    s.sendall(frame(HELLO) + frame({"type": "console", "name": "vm2"}) + b"early bytes\n")
    assert read_frame(s)["type"] == "hello"
    assert read_frame(s)["reply"]["status"] == 0
    seen = b""
    while b"EARLY BYTES\n" not in seen:
        chunk = s.recv(4096)
        assert chunk, f"the console closed; it showed {seen!r}"
        seen += chunk
    s.close()
