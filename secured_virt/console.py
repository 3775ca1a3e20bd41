"""Relay a VM's console stream to this terminal (svirsh console in direct mode).

Like ``virsh console``: the terminal goes to raw mode, bytes flow both ways, and Ctrl-]
(0x1d) leaves.  The terminal is always restored, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty

ESCAPE = b"\x1d"  # Ctrl-]


@contextlib.contextmanager
def raw_terminal(fd: int):
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay_local(stream, stdin_fd: int | None = None, stdout_fd: int | None = None) -> int:
    """Copy stream -> stdout and stdin -> stream until Ctrl-] or the stream ends."""
    stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    stdout_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    done = threading.Event()

    def pump_out():
        try:
            while not done.is_set():
                data = stream.recv(4096)
                if not data or data in (-2,):
                    break
                os.write(stdout_fd, data)
        except Exception:  # the stream closed under us: leave quietly
            return
        finally:
            done.set()

    t = threading.Thread(target=pump_out, daemon=True)
    t.start()
    with raw_terminal(stdin_fd):
        while not done.is_set():
            r, _, _ = select.select([stdin_fd], [], [], 0.2)
            if not r:
                continue
            data = os.read(stdin_fd, 1024)
            if not data or ESCAPE in data:
                data = data.split(ESCAPE, 1)[0]
                if data:
                    stream.send(data)
                break
            stream.send(data)
    done.set()
    with contextlib.suppress(Exception):
        stream.finish()
    os.write(stdout_fd, b"\r\n")
    return 0
