"""The wire format on both sides: framing, strict validation, and the client's light codec."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from svtd_helpers import PY, REPO

from secured_virt import client
from secured_virt.daemon import protocol as P

# -- the client's codec (C accelerator, no json package) agrees with json --------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_client_codec_round_trips_like_json(value):
    encoded = client._dumps(value)
    assert json.loads(encoded) == value
    assert client._loads(encoded) == value
    assert client._loads(json.dumps(value, ensure_ascii=False).encode()) == value


@pytest.mark.parametrize(
    "text", [b"", b"{", b'{"a":1} x', b"NaN", b'{"a": Infinity}', b"[1,]", b"\xff\xfe"]
)
def test_client_codec_rejects_malformed(text):
    with pytest.raises((ValueError, UnicodeDecodeError)):
        client._loads(text)


def test_client_codec_refuses_nan():
    with pytest.raises(ValueError):
        client._dumps({"x": float("nan")})


def test_client_and_server_constants_agree():
    assert client.PROTOCOL_VERSION == P.PROTOCOL_VERSION
    assert client.HEADER_BYTES == P.HEADER_BYTES


def test_client_frames_decode_on_the_server():
    frame = client._frame({"type": "request", "request": {"command": "list", "args": {"é": 1}}})
    n = int.from_bytes(frame[:4], "big")
    assert n == len(frame) - 4
    assert P.decode(frame[4:]) == {
        "type": "request",
        "request": {"command": "list", "args": {"é": 1}},
    }


# -- server-side validation ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'"hello"', "must be a JSON object"),
        (b'{"version": 1}', "unknown frame type None"),
        (b'{"type": "exec", "cmd": "id"}', "unknown frame type 'exec'"),
        (b'{"type": "hello", "version": 1, "uid": 0}', "unknown field(s) 'uid'"),
        (b'{"type": "request", "request": {}, "user": "root"}', "unknown field(s) 'user'"),
        (b'{"type": "hello", "version": true}', "'hello'.version must be"),
        (b'{"type": "hello", "version": "1"}', "'hello'.version must be"),
        (b'{"type": "hello"}', "needs a 'version'"),
        (b'{"type": "request", "request": []}', "'request'.request must be"),
        (b'{"type": "console"}', "needs a 'name'"),
        (b'{"type": "password", "password": 5}', "'password'.password must be"),
        (b'{"type": "hello", "version": NaN}', "not valid JSON"),
        (b'{"type": "hello", \xff}', "not valid UTF-8"),
        (b"[" * 100000 + b"]" * 100000, "too deeply"),
        (b"{'type': 'hello'}", "not valid JSON"),
    ],
)
def test_server_rejects_malformed_frames(body, needle):
    with pytest.raises(P.ProtocolError) as info:
        P.decode(body)
    assert info.value.code == P.E_BAD_FRAME
    assert needle in str(info.value)


def _pair():
    a, b = socket.socketpair()
    return a, b


def test_reader_limits_size_before_reading_the_body():
    a, b = _pair()
    a.sendall((10_000_000).to_bytes(4, "big"))  # and no body at all
    with pytest.raises(P.ProtocolError) as info:
        P.FrameReader(b, max_bytes=4096).read(timeout=2)
    assert info.value.code == P.E_TOO_LARGE
    assert "10000000 bytes exceeds the limit of 4096" in str(info.value)


def _read_while_trickling(a, b, timeout: float) -> P.ProtocolError:
    """Read one frame from ``b`` while ``a`` announces 100 bytes and then sends one every
    0.1 s (a client keeping a frame open byte by byte); the reader's error."""
    stop = threading.Event()

    def trickle():
        a.sendall((100).to_bytes(4, "big"))
        while not stop.wait(0.1):
            try:
                a.sendall(b" ")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    try:
        with pytest.raises(P.ProtocolError) as info:
            P.FrameReader(b, max_bytes=4096).read(timeout=timeout)
    finally:
        stop.set()
    return info.value


def test_reader_deadline_is_per_frame_not_per_byte():
    """A client trickling bytes cannot keep the frame open past the timeout."""
    error = _read_while_trickling(*_pair(), timeout=0.6)
    assert error.code == P.E_TIMEOUT
    assert "started but not completed within 0.6s" in str(error)


#: a frame that announces 50 bytes and stops after 7 of them
HALF_FRAME = (50).to_bytes(4, "big") + b'{"type"'


def _peer_closed(a, b, sent: bytes = b"") -> P.PeerClosed:
    """What a reader on ``b`` raises once ``a`` has sent ``sent`` (if anything) and closed."""
    if sent:
        a.sendall(sent)
    a.close()
    with pytest.raises(P.PeerClosed) as info:
        P.FrameReader(b, max_bytes=4096).read(timeout=2)
    return info.value


def test_reader_reports_truncation_as_partial_close():
    assert _peer_closed(*_pair(), HALF_FRAME).partial


def test_reader_clean_close_between_frames_is_not_partial():
    assert not _peer_closed(*_pair()).partial


@pytest.mark.parametrize(("spec", "byte"), [("^]", 0x1D), ("^C", 0x03), ("^[", 0x1B), ("q", 0x71)])
def test_escape_notation(spec, byte):
    assert client.parse_escape(spec) == byte


@pytest.mark.parametrize("spec", ["", "ab", "^", "é", "^é"])
def test_escape_notation_rejects(spec):
    with pytest.raises(ValueError):
        client.parse_escape(spec)


# -- the client path stays light ------------------------------------------------------------
def test_client_imports_only_stdlib_and_requests():
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "before = set(sys.modules)\n"
        "import secured_virt.client\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [PY, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    ours = {m for m in out if m.split(".")[0] in ("secured_virt", "rbac", "policy")}
    assert ours == {"secured_virt", "secured_virt.client", "secured_virt.requests"}
    for heavy in ("libvirt", "lxml", "json", "socket", "selectors", "argparse"):
        assert heavy not in out, f"the client imported {heavy}"


# -- svirtd's sessions keep their socket non-blocking (protocol.wait_for) -----------------------


def _nonblocking_pair():
    a, b = socket.socketpair()
    b.setblocking(False)
    return a, b


def test_nonblocking_reader_reads_frames_sent_in_pieces_and_back_to_back():
    a, b = _nonblocking_pair()
    reader = P.FrameReader(b, max_bytes=4096)
    one, two = P.encode({"type": "hello", "version": 1}), P.encode({"type": "status"})

    def send_slowly():
        for chunk in (one[:2], one[2:7], one[7:] + two):
            time.sleep(0.05)
            a.sendall(chunk)

    threading.Thread(target=send_slowly, daemon=True).start()
    assert reader.read(timeout=5)["type"] == "hello"
    assert reader.read(timeout=5)["type"] == "status"
    assert b.gettimeout() == 0.0  # never switched back and forth


def test_nonblocking_reader_keeps_the_deadline_per_frame():
    error = _read_while_trickling(*_nonblocking_pair(), timeout=0.6)
    assert error.code == P.E_TIMEOUT
    assert "started but not completed within 0.6s" in str(error)
    _silent, b2 = _nonblocking_pair()
    with pytest.raises(P.ProtocolError) as idle:
        P.FrameReader(b2, max_bytes=4096).read(timeout=0.3)
    assert "no request within 0.3s" in str(idle.value)


def test_nonblocking_reader_tells_truncation_from_a_clean_close():
    assert _peer_closed(*_nonblocking_pair(), HALF_FRAME).partial
    assert not _peer_closed(*_nonblocking_pair()).partial


def test_nonblocking_send_to_a_peer_that_never_reads_gives_up_at_the_timeout():
    _deaf, b = _nonblocking_pair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = {"type": "reply", "reply": {"data": "x" * 4_000_000}}
    with pytest.raises(TimeoutError):
        P.send(b, big, 0.5)
    small = P.encode({"type": "status"})
    a2, b2 = _nonblocking_pair()
    P.send(b2, {"type": "status"}, 1.0)
    assert a2.recv(100) == small


class _CountingSocket:
    """A real socket whose receive calls are counted (each one is a system call that lets go
    of the GIL in svirtd)."""

    def __init__(self, sock):
        self._sock = sock
        self.receives = 0

    def recv(self, *args):
        self.receives += 1
        return self._sock.recv(*args)

    def recv_into(self, *args):
        self.receives += 1
        return self._sock.recv_into(*args)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_frames_written_at_once_are_read_with_one_receive():
    """svirsh writes its hello and its request at once: two frames, one recv (not one per
    header and one per body)."""
    a, b = _nonblocking_pair()
    counted = _CountingSocket(b)
    reader = P.FrameReader(counted, max_bytes=4096)
    a.sendall(P.encode({"type": "hello", "version": 1}) + P.encode({"type": "status"}))
    assert reader.read(timeout=5)["type"] == "hello"
    assert reader.has_frame()
    assert reader.read(timeout=5, answer=True)["type"] == "status"  # buffered: no wait
    assert counted.receives == 1
    assert not reader.has_frame()


def test_reader_hands_over_the_bytes_after_the_last_frame():
    """What the client sent after its last frame (a console's first keystrokes) is kept for
    whoever takes the socket over, not lost in the reader's buffer."""
    a, b = _nonblocking_pair()
    reader = P.FrameReader(b, max_bytes=4096)
    a.sendall(P.encode({"type": "console", "name": "vm1"}) + b"ls -l\n")
    assert reader.read(timeout=5)["name"] == "vm1"
    assert reader.take_buffered() == b"ls -l\n"
    assert reader.take_buffered() == b""


def test_reader_waiting_for_an_answer_reads_it_when_it_comes():
    """``answer``: poll first, then read; same frames, same deadline."""
    a, b = _nonblocking_pair()
    reader = P.FrameReader(b, max_bytes=4096)
    threading.Timer(0.1, a.sendall, (P.encode({"type": "status"}),)).start()
    assert reader.read(timeout=5, answer=True)["type"] == "status"
    with pytest.raises(P.ProtocolError) as idle:
        reader.read(timeout=0.2, waiting_for="answer to the password prompt", answer=True)
    assert "no answer to the password prompt within 0.2s" in str(idle.value)
