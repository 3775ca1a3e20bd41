"""svirtd: the privileged broker that serves non-root users over a Unix socket.

Modules, one job each:

* ``protocol``  — frames and message validation (the wire format of docs/protocol.md);
* ``listener``  — the listening socket: our own (path, owner, group, mode) or systemd's (fd 3);
* ``session``   — one client connection: hello, requests, PAM round trips, console relay;
* ``watcher``   — policy hot reload (SIGHUP, or UA/PA/ACM files changing on disk);
* ``server``    — accept loop, limits, counters, signals, clean shutdown, ``main()``.
"""
