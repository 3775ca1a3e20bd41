"""svirsh's direct mode: run the request in this process (root, or a user through sudo).

Imported only when needed, because it pulls in libvirt, lxml, rbac and policy.
"""

from __future__ import annotations

import sys

from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_OK, Reply, Request


def _context(g):
    """(config, identity) or raise SystemExit-style errors as (None, Reply)."""
    from secured_virt.access.identity import IdentityError, identify_process
    from secured_virt.config import ConfigError, load_config

    try:
        ident = identify_process(as_user=g.as_user)
    except IdentityError as exc:
        return None, None, Reply(EXIT_DENIED, message=str(exc), check="identity")
    # under sudo this process is root but the caller is not: what the caller may choose is
    # decided by *their* uid, as svirtd would (a URI is opened as root: ext's command= runs)
    if g.connect and ident.uid != 0:
        return (
            None,
            None,
            Reply(
                EXIT_DENIED,
                message=f"--connect is root's alone; you are {ident.user} (uid {ident.uid}, "
                "through sudo): omit it to use the host's configured hypervisor",
                check="identity",
            ),
        )
    try:
        config = load_config(g.config, caller_uid=ident.uid)
    except ConfigError as exc:
        return None, None, Reply(EXIT_BAD_POLICY, message=str(exc))
    if g.connect:
        import dataclasses

        config = dataclasses.replace(config, uri=g.connect)
    return config, ident, None


class TtyInteraction:
    """Direct mode talks to the human on this process's terminal."""

    def __init__(self, tty):
        self.tty = tty

    def ask_password(self, prompt: str) -> str | None:
        from secured_virt.client import tty_password  # the same reading as through svirtd

        return tty_password(prompt)

    def progress(self, done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 0
        sys.stderr.write(f"\rMigration: [{pct:3d} %]")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _missing_dependency() -> str | None:
    """Direct mode drives libvirt and parses XML in this interpreter: say which package is
    missing rather than fail with a traceback.  (The bin/ launchers no longer check this for
    everyone: talking to svirtd needs neither, and importing them cost each client ~40 ms.)"""
    try:
        import libvirt
        import lxml.etree
    except ImportError:
        pass
    else:
        return None
    if sys.flags.no_site:  # svirsh added only the site directories: .pth files may hold them
        import site

        site.main()
    try:
        import libvirt  # noqa: F401
        import lxml.etree  # noqa: F401
    except ImportError as exc:
        return (
            f"{sys.executable} is missing the Python module {exc.name}, which direct mode "
            "needs: install python3-lxml and python3-libvirt (Debian), or run the svirsh of "
            "the secured-virt venv"
        )
    return None


def _local_uri(uri: str) -> bool:
    """A URI this host's libvirt opens itself: no host, no transport (ssh, tls, ext's
    command), no parameters, so opening it early can neither ask for a password nor reach
    another machine (``test:///...``, ``qemu:///system``)."""
    scheme, sep, rest = uri.partition("://")
    return bool(sep) and scheme.isalnum() and rest.startswith("/") and "?" not in rest


def _connect_early(config, ident, as_user):
    """Open the hypervisor connection in a thread while this one imports the service.

    Why: a direct-mode request spends ~25 ms importing the service and ~8 ms in
    virConnectOpen (libvirt's test driver parses its node file; qemu:/// connects to
    libvirtd), and libvirt lets go of the GIL while it connects, so the two overlap on a
    second core (issue 18).  Nothing is decided or skipped by this: the service opens the same
    backend with the same arguments as ``Service.backend`` would (``open_backend`` of the
    configured kind and URI), only sooner, and every request still resolves, decides, audits
    and then acts on it.  Only for plain root (no ``--as``, not a sudo caller: what root asks
    as itself is never refused, so a command that uses the hypervisor reaches it anyway, while
    anyone else's request may be refused before it does), the libvirt backend and a local URI
    (``_local_uri``); any failure here is dropped and the service opens the connection itself
    at its first use, reporting the error exactly as without this.  Returns a function that
    waits for the connection and gives it (None: the service opens one itself when it needs
    it)."""
    if ident.uid != 0 or as_user or config.backend != "libvirt" or not _local_uri(config.uri):
        return lambda: None
    import contextlib
    import threading

    # imported here, not in the thread: the thread only connects
    from secured_virt.backends import libvirt_backend  # noqa: F401
    from secured_virt.backends.factory import open_backend

    opened = []

    def connect():
        # a failure is dropped: the service's own open at first use reports it (see above)
        with contextlib.suppress(Exception):
            opened.append(open_backend("libvirt", config.uri))

    thread = threading.Thread(target=connect, name="svirsh-connect", daemon=True)
    thread.start()

    def connection():
        thread.join()
        return opened[0] if opened else None

    return connection


def run_direct(g, cmd, args: dict, emit) -> int:
    missing = _missing_dependency()
    if missing is not None:
        return emit(cmd.name, args, Reply(EXIT_BAD_POLICY, message=missing))
    config, ident, err = _context(g)
    if err is not None:
        return emit(cmd.name, args, err)
    connection = _connect_early(config, ident, g.as_user)
    from secured_virt.service import Service

    # one request: build what it uses (on_demand), on the connection opened meanwhile
    service = Service.from_config(config, on_demand=True, backend=connection())
    interaction = TtyInteraction(getattr(ident, "tty", None))
    if cmd.name == "console":
        reply, stream = service.open_console(ident, args["domain"], interaction)
        if stream is None:
            return emit(cmd.name, args, reply)
        from secured_virt.console import relay_local
        from secured_virt.hardening import long_lived

        long_lived()
        sys.stdout.write(reply.data["message"] + "\nEscape character is ^]\n")
        sys.stdout.flush()
        return relay_local(stream)
    request = Request(cmd.name, {k: v for k, v in args.items() if k != "json"}, g.as_user)
    return emit(cmd.name, args, service.handle(ident, request, interaction))


def forget_credentials(g, socket_path: str) -> int:
    """svirsh -k: forget the caller's cached authentication and end the roles active in their
    login sessions (here and in svirtd)."""
    import os

    if os.getuid() != 0 or g.daemon:
        from secured_virt import client

        if client.daemon_available(socket_path):
            reply = client.call(socket_path, Request("forget-credentials", {}))
            return 0 if reply.ok else reply.status
        return EXIT_OK
    from secured_virt.access.credcache import CredCache
    from secured_virt.access.identity import identify_process
    from secured_virt.access.rolesession import ActiveRoles
    from secured_virt.config import load_config

    ident = identify_process()
    config = load_config(g.config, caller_uid=ident.uid)  # a sudo caller may not pick one
    CredCache.from_config(config).forget(ident.uid)
    ActiveRoles.from_config(config).forget(ident.uid)
    return EXIT_OK
