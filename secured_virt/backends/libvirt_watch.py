"""A helper process that follows a libvirt daemon's domain events for svirtd: it prints the
UUID of each domain an event is about, one per line (``*`` when it cannot tell which).

Why a process of its own: svirtd's connection to libvirtd must not be watched by an event
loop in svirtd.  Once libvirt's default event loop is registered in a process, every remote
connection it opens afterwards hands its socket between the calling thread and the loop's
thread on each call, and in Python each hand-off wakes the loop's thread into the interpreter:
+20-70 us of CPU per libvirt call measured here, more than the metadata reads the events save
(backends.libvirt_events).  So the events come over a connection of this process's own, and
svirtd only reads lines from a pipe.  (An in-process driver, ``test:///``, has no socket: svirtd
follows its events itself.)

Protocol on stdout: ``ready`` once the callbacks are registered, or ``error: <why>`` and exit
1; then one line per event.  The helper exits when the connection to libvirtd closes or when
its stdin reaches end of file (svirtd went away), so it never outlives its reader.
"""

from __future__ import annotations

import os
import sys

#: how svirtd starts this module: ``python -I -c BOOT <package root> <uri>``
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from secured_virt.backends.libvirt_watch import main; main(sys.argv[2:])"
)


def _say(line: str) -> None:
    try:
        os.write(1, line.encode("ascii", "replace") + b"\n")
    except OSError:  # the reader is gone
        os._exit(0)


def main(argv: list[str]) -> None:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)  # errors are told on stdout, below
    if len(argv) != 1:
        _say("error: usage: libvirt_watch URI")
        sys.exit(1)
    try:
        libvirt.virEventRegisterDefaultImpl()
        conn = libvirt.open(argv[0])

        def on_event(_conn, dom, *_details):
            try:
                _say(dom.UUIDString())
            except libvirt.libvirtError:
                _say("*")

        for event in (
            libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
        ):
            conn.domainEventRegisterAny(None, event, on_event, None)
        conn.registerCloseCallback(lambda *_: os._exit(0), None)
        conn.setKeepAlive(5, 3)  # a libvirtd that stops answering closes the connection
        # svirtd holds our stdin: when it goes, the pipe reads end of file
        libvirt.virEventAddHandle(
            0,
            libvirt.VIR_EVENT_HANDLE_READABLE | libvirt.VIR_EVENT_HANDLE_HANGUP,
            lambda *_: os._exit(0),
            None,
        )
    except libvirt.libvirtError as exc:
        _say(f"error: {exc.get_error_message() or exc}")
        sys.exit(1)
    _say("ready")
    while True:
        libvirt.virEventRunDefaultImpl()
