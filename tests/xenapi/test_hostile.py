"""Hostile input against the real svirt-xenapi and svirtd: oversized bodies and headers, slow
clients, entity bombs and external entities, forged/replayed tokens, a login flood, many
connections at once, and a compromised front-end talking to svirtd directly.  After each the
server keeps serving, answers stay correct and the audit chain verifies."""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest
from svtd_helpers import HELLO, client_snippet, frame

from secured_virt.access.audit import verify

from .conftest import PASSWORDS, XenEnv

pytestmark = pytest.mark.integration


@pytest.fixture
def hostile(readable_src):
    env = XenEnv(readable_src, xenapi_request_timeout=2, xenapi_max_body_bytes=65536)
    yield env
    env.stop()


def still_serving(env) -> None:
    s = env.login("svt-alice")
    assert {r["name_label"] for r in s.xenapi.VM.get_all_records().values()} == {
        "alice-web",
        "alice-db",
    }
    s.xenapi.session.logout()
    assert verify(env.env.audit_log).ok


def tls_conn(env, timeout: float = 10) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", env.port), timeout)
    return env.context().wrap_socket(raw, server_hostname="127.0.0.1")


def http(env, head: bytes, body: bytes = b"") -> bytes:
    with tls_conn(env) as s:
        s.sendall(head + body)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
        return out


def post(env, body: bytes, extra: bytes = b"") -> bytes:
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nConnection: close\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    return http(env, head, body)


CALL = (
    b"<?xml version='1.0'?><methodCall><methodName>session.login_with_password</methodName>"
    b"<params><param><value><string>%s</string></value></param>"
    b"<param><value><string>x</string></value></param></params></methodCall>"
)


def test_oversized_body_and_headers_are_refused(hostile):
    assert b" 413 " in post(hostile, b"<a>" + b"x" * 200_000 + b"</a>").split(b"\r\n")[0]
    big_header = b"X-Big: " + b"y" * 100_000 + b"\r\n"
    status = post(hostile, CALL % b"svt-alice", big_header).split(b"\r\n")[0]
    assert b" 400 " in status or b" 431 " in status, status
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    status = post(hostile, CALL % b"svt-alice", many).split(b"\r\n")[0]
    assert status.split(b" ")[1].startswith(b"4"), status
    still_serving(hostile)


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<methodCall><methodName>session.login_with_password</methodName><params>
<param><value><string>&lol4;</string></value></param>
<param><value><string>x</string></value></param></params></methodCall>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>session.login_with_password</methodName><params>
<param><value><string>&x;</string></value></param>
<param><value><string>x</string></value></param></params></methodCall>"""

UNDECLARED = CALL.replace(b"%s", b"&undeclared;")


@pytest.mark.parametrize("body", [BOMB, XXE, UNDECLARED], ids=["bomb", "xxe", "undeclared"])
def test_entities_are_never_expanded(hostile, body):
    out = post(hostile, body)
    assert b"<fault>" in out and b"-32700" in out, out[-400:]
    assert b"lollol" not in out and b"root:" not in out
    # nothing reached svirtd: no login was attempted for any name
    assert not [r for r in hostile.audit() if r.get("op") == "session-login"]
    still_serving(hostile)


def test_slow_clients_are_dropped_and_others_served(hostile):
    slow_head = tls_conn(hostile, timeout=30)
    slow_head.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    slow_body = tls_conn(hostile, timeout=30)
    slow_body.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 5000\r\n\r\n<"
    )
    started = time.monotonic()
    still_serving(hostile)  # served while the slow ones hang on
    for s in (slow_head, slow_body):
        got = b""
        try:
            while True:
                s.sendall(b"X")  # one byte now and then, like slowloris
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (OSError, ssl.SSLError):
            pass
        assert time.monotonic() - started < 15, "a slow client held its connection"
        assert got == b"" or b" 408 " in got.split(b"\r\n")[0], got[:200]
        s.close()


def test_forged_and_replayed_tokens(hostile):
    raw = hostile.raw()
    alice = hostile.login("svt-alice")
    token = alice.handle
    for forged in ("A" * 43, token[:-1] + ("A" if token[-1] != "A" else "B"), "x", "é" * 43):
        res = raw.VM.get_all(forged)
        assert res["ErrorDescription"] == ["SESSION_INVALID", forged]
    res = raw.VM.get_all("Z" * 30_000)
    assert res["ErrorDescription"] == ["SESSION_INVALID", "Z" * 256]
    # replay after logout
    assert raw.VM.get_all(token)["Status"] == "Success"
    assert raw.session.logout(token)["Status"] == "Success"
    assert raw.VM.get_all(token)["ErrorDescription"][0] == "SESSION_INVALID"
    assert raw.VM.start(token, "x", False)["ErrorDescription"][0] == "SESSION_INVALID"
    still_serving(hostile)


def test_login_flood_is_throttled_and_audited(hostile):
    raw = hostile.raw()
    answers = [raw.session.login_with_password("svt-bob", f"guess{i}") for i in range(40)]
    texts = [a["ErrorDescription"][2] for a in answers]
    assert all(a["Status"] == "Failure" for a in answers)
    assert sum("too many failed logins" in t for t in texts) >= 34  # 5 PAM tries, then none
    # the right password does not get through while the window lasts
    res = raw.session.login_with_password("svt-bob", PASSWORDS["svt-bob"])
    assert "too many failed logins" in res["ErrorDescription"][2]
    recs = [r for r in hostile.audit() if r.get("op") == "session-login"]
    assert [r["check"] for r in recs[:5]] == ["pam"] * 5
    assert {r["check"] for r in recs[5:]} <= {"rate-limit"}
    # the address limit: 20 failures from this host stop logins for other users too
    for i in range(20):
        raw.session.login_with_password(f"svt-nobody{i}", "x")
    res = raw.session.login_with_password("svt-alice", PASSWORDS["svt-alice"])
    assert "address 127.0.0.1" in res["ErrorDescription"][2]
    assert verify(hostile.env.audit_log).ok


def test_a_thousand_connections_at_once(hostile):
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = 1000 if soft > 2500 else max(100, soft // 3)
    held = []
    try:
        for _ in range(n):
            held.append(socket.create_connection(("127.0.0.1", hostile.port), 10))
        # the TLS handshakes of the held sockets never happen; a real client still gets in
        still_serving(hostile)
        half = [tls_conn(hostile) for _ in range(50)]
        for s in half:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in half:
            assert b" 405 " in s.recv(4096).split(b"\r\n")[0]
            s.close()
    finally:
        for s in held:
            s.close()
    still_serving(hostile)


def test_a_compromised_frontend_cannot_name_a_user(hostile, as_user, readable_src, test_users):
    """svirtd itself, spoken to as the front-end's uid and as an ordinary user."""
    good = hostile.login("svt-alice").handle
    frames = [
        {"type": "session_request", "token": "A" * 43, "request": {"command": "list"}},
        {"type": "session_request", "token": good, "request": {"command": "list", "args": {},
                                                               "as_user": "svt-bob"}},
    ]  # fmt: skip
    body = (
        "import socket\n"
        "def frame(o):\n"
        "    b = json.dumps(o).encode(); return len(b).to_bytes(4, 'big') + b\n"
        "def read(s):\n"
        "    h = s.recv(4, socket.MSG_WAITALL); n = int.from_bytes(h, 'big')\n"
        "    return json.loads(s.recv(n, socket.MSG_WAITALL))\n"
        "out = []\n"
        "for f in json.loads(sys.argv[1]):\n"
        "    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[2])\n"
        "    s.sendall(frame({'type': 'hello', 'version': 1})); read(s)\n"
        "    s.sendall(frame(f)); out.append(read(s)); s.close()\n"
        "print(json.dumps(out))\n"
    )
    argv = [*client_snippet(readable_src, body), json.dumps(frames), hostile.env.socket]
    res = as_user(hostile.fe, argv)
    assert res.returncode == 0, res.stderr
    forged, as_bob = json.loads(res.stdout)
    assert forged["reply"]["check"] == "session" and forged["reply"]["status"] == 3
    assert as_bob["reply"]["status"] == 2 and "as_user" in as_bob["reply"]["message"]
    # a user field in a session request is a protocol error, not half-honoured
    extra = [{"type": "session_request", "token": good, "user": "svt-bob",
              "request": {"command": "list"}}]  # fmt: skip
    res = as_user(hostile.fe, [*client_snippet(readable_src, body), json.dumps(extra),
                               hostile.env.socket])  # fmt: skip
    assert json.loads(res.stdout)[0]["code"] == "bad-frame"
    # an ordinary user holding alice's token gets nothing: not a front-end's uid
    res = as_user(test_users["svt-bob"], [*client_snippet(readable_src, body),
                                          json.dumps(frames[1:]), hostile.env.socket])  # fmt: skip
    reply = json.loads(res.stdout)[0]["reply"]
    assert reply["status"] == 3 and reply["check"] == "identity"
    assert [r for r in hostile.audit() if r.get("check") == "identity" and r.get("uid") ==
            test_users["svt-bob"].pw_uid]  # fmt: skip
    assert frame  # (helpers imported for raw use elsewhere)
    assert HELLO["version"] == 1
    still_serving(hostile)
