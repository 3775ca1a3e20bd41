"""Run the real svirtd server (real socket, real SO_PEERCRED identity, real signals) around
the FakeService, as a separate process: ``run_fake_svirtd.py WORKDIR SOCKET [limit=value...]``.
"""

from __future__ import annotations

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), HERE]

from svtd_fakes import FakeService  # noqa: E402

from secured_virt.daemon import listener  # noqa: E402
from secured_virt.daemon.server import Limits, Server, _setup_logging  # noqa: E402


def main() -> int:
    workdir, sock_path, *limit_args = sys.argv[1:]
    _setup_logging("debug", False)
    limits = {}
    for item in limit_args:
        key, _, value = item.partition("=")
        limits[key] = float(value) if "." in value else int(value)
    service = FakeService(workdir)
    sock = listener.from_systemd()
    activated = sock is not None
    if sock is None:
        sock = listener.bind_unix(sock_path, mode=0o666, group=None)
    server = Server(
        service,
        sock,
        limits=Limits(**limits),
        socket_path=sock_path,
        owns_path=not activated,
        reload_interval=0.2,
    )
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: server.request_reload("SIGHUP"))
    return server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
