"""svirsh console through svirtd: the stream is relayed byte for byte, Ctrl-] leaves, refusals
are refusals, and the console is released however the session ends."""

from __future__ import annotations

import signal
import time

import pytest
from svtd_helpers import console_proc, read_until, wait_log

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("vm", ["vm1", "vm2"])  # blocking and non-blocking streams
def test_console_relay_and_escape(fake_daemon, test_users, readable_src, vm):
    p = console_proc(test_users["svt-alice"], readable_src, fake_daemon.socket, vm)
    out = read_until(p, b"fake console ready\n")
    assert out.startswith(f"Connected to domain '{vm}'\nEscape character is ^]\n".encode())
    p.stdin.write(b"hello console\n")
    p.stdin.flush()
    read_until(p, b"HELLO CONSOLE\n")
    p.stdin.write(b"bye\x1dignored")
    p.stdin.flush()
    assert p.wait(10) == 0
    wait_log(fake_daemon, f"console on '{vm}' closed")
    assert "svt-alice (uid" in fake_daemon.log()


def test_custom_escape_character(fake_daemon, test_users, readable_src):
    p = console_proc(test_users["svt-alice"], readable_src, fake_daemon.socket, "vm1", "^E")
    read_until(p, b"fake console ready\n")
    p.stdin.write(b"abc\x1ddef\n")  # ^] is just data now
    p.stdin.flush()
    read_until(p, b"ABC\x1dDEF\n")
    p.stdin.write(b"\x05")
    p.stdin.flush()
    assert p.wait(10) == 0


def test_guest_side_ending_ends_the_session(fake_daemon, readable_src):
    p = console_proc(None, readable_src, fake_daemon.socket, "vm1")
    read_until(p, b"fake console ready\n")
    p.stdin.write(b"quit")
    p.stdin.flush()
    assert p.wait(10) == 0
    wait_log(fake_daemon, "console on 'vm1' closed")


def test_console_refused(fake_daemon, test_users, readable_src):
    p = console_proc(test_users["svt-bob"], readable_src, fake_daemon.socket, "vm1")
    out, err = p.communicate(timeout=10)
    assert p.returncode == 3
    assert b"error: denied: console" in err
    assert b"Connected" not in out
    p = console_proc(test_users["svt-alice"], readable_src, fake_daemon.socket, "nosuch")
    _out, err = p.communicate(timeout=10)
    assert p.returncode == 1
    assert b"failed to get domain 'nosuch'" in err


def test_client_killed_mid_console_releases_it(fake_daemon, test_users, readable_src):
    p = console_proc(test_users["svt-alice"], readable_src, fake_daemon.socket, "vm1")
    read_until(p, b"fake console ready\n")
    p.kill()
    p.wait()
    wait_log(fake_daemon, "console on 'vm1' closed")


def test_open_console_does_not_hold_up_shutdown(fake_daemon, readable_src):
    p = console_proc(None, readable_src, fake_daemon.socket, "vm1")
    read_until(p, b"fake console ready\n")
    t0 = time.monotonic()
    fake_daemon.send_signal(signal.SIGTERM)
    assert fake_daemon.proc.wait(10) == 0
    assert time.monotonic() - t0 < 3
    assert p.wait(10) == 0
