"""svirsh — virsh-like commands, checked against your roles before they reach the hypervisor.

Two ways in, one decision path (both call the same ``Service.handle``):

* through ``svirtd``'s Unix socket, the daemon learning who you are from the kernel
  (SO_PEERCRED) — always for non-root callers, and root's default too: like virsh going to
  libvirtd, root's svirsh asks svirtd whenever it answers.  That is the fast way: this
  process loads neither libvirt nor the role files and takes less time than virsh, while a
  Python process that only imports the libvirt binding already takes about twice virsh's
  (bench/RESULTS.md, the client section's floor row), so no direct mode can be fast.  Root's
  requests are decided as uid 0 and audited ``via: svirtd``, with the same gate as in-process;
* in-process ("direct mode"): root when svirtd is not running (the one connect attempt finds
  no socket or a stale one), when ``--direct`` is given, or when an option only direct mode
  has is given (``-c/--connect``: svirtd keeps the host's hypervisor; ``--config`` naming
  another configuration than the host's: svirtd runs with the host's), and a user running
  ``sudo svirsh`` (see below).  ``--socket`` or ``--daemon`` ask for svirtd: if it does not
  answer that is an error, never a silent switch to another way in.

Nothing root does in direct mode is lost through svirtd: root's FILE of ``define``/``create``
is read here with root's rights either way, and the FILE of ``save``/``restore``/``dump`` is
made absolute here (svirtd's working directory is not the caller's).  The differences are
where the policy comes from (svirtd enforces the UA/PA it has loaded; ``svirt-admin``'s edits
reload it, a hand-edited file is picked up when svirtd notices it) and the audit's ``via``.

Under sudo the process is root but the caller is the user who ran sudo, so nothing may be
done with root's rights on the caller's say-so: FILE of ``define``/``create`` is read with the
caller's rights (a root-only file stays unreadable), and ``--daemon`` (with or without
``--socket``) first drops root for good and connects as the caller — svirtd's SO_PEERCRED then
names the real caller, whose roles decide and whose name is audited, and ``--as`` is refused
and audited there as it is for any non-root caller.  Dropping rather than refusing keeps
``sudo svirsh --daemon`` exactly what ``svirsh`` without sudo would do.  Without ``--daemon`` a
sudo caller runs in direct mode, as before: root's default does not apply to them.

This module is the client's start-up path, so it imports only the standard library and the
small request/render modules; the heavy parts (libvirt, lxml, rbac, policy) load only in
direct mode.
"""

from __future__ import annotations

import os
import sys

from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Reply, Request

from .commands import COMMANDS, UsageError, parse_command

CONFIG_PATH = "/etc/secured-virt/secured-virt.conf"
DEFAULT_SOCKET = "/run/secured-virt/svirtd.sock"

USAGE = """\
usage: svirsh [GLOBAL OPTIONS] COMMAND [ARGS...]
       svirsh COMMAND --help

Manage the virtual machines you have been given roles for.  Every command is checked
against the host's role policy (who may do what on which VM), and — when an sHype/ACM policy
is active — against the VM's security label, then audited, before it reaches the hypervisor.

global options:
  -c, --connect URI   hypervisor URI (direct mode only; default from the config)
  --as USER           act as USER, like sudo -u (root only; refused and audited otherwise)
  --json              print results of read commands as JSON
  --direct            run in-process (root or sudo only); root's default is svirtd
                      when it answers, else in-process
  --daemon            go through svirtd (root included; under sudo: as the caller)
  --socket PATH       go through the svirtd at PATH (default from the config:
                      %(socket)s)
  --config PATH       configuration file (root only; another than the host's runs
                      in-process; default %(config)s)
  -k                  forget your cached authentication (like sudo -k) and end the
                      roles active in your login sessions (dynamic separation)
  -h, --help          this help;  svirsh COMMAND --help for one command
  -V, --version       print the version

commands:
%(commands)s
examples:
  svirsh list --all               the VMs you may see, running or not
  svirsh start alice-web          start your VM
  svirsh dominfo alice-web --json
  svirsh start -- --odd-name      names are data: '--' before a name starting with '-'

exit codes: 0 ok, 1 the hypervisor failed, 2 usage, 3 denied, 4 bad policy or configuration
"""


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = "".join(f"  {n.ljust(width)}  {c.summary}\n" for n, c in COMMANDS.items())
    extra = "".join(
        f"  {n.ljust(width)}  {s}\n"
        for n, s in (("help", "this help"), ("operations", "the operation catalogue"))
    )
    return USAGE % {"commands": lines + extra, "socket": DEFAULT_SOCKET, "config": CONFIG_PATH}


class Globals:
    __slots__ = ("as_user", "config", "connect", "daemon", "direct", "forget", "json", "socket")

    def __init__(self):
        self.connect = self.as_user = self.config = self.socket = None
        self.json = self.direct = self.daemon = self.forget = False


def parse_globals(argv: list[str]) -> tuple[Globals, str | None, list[str]]:
    """Global options come before the command word; everything after belongs to the command."""
    g = Globals()
    i = 0
    takes_value = {
        "-c": "connect",
        "--connect": "connect",
        "--as": "as_user",
        "--socket": "socket",
        "--config": "config",
    }
    flags = {"--json": "json", "--direct": "direct", "--daemon": "daemon", "-k": "forget"}
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            return g, "help", []
        if a in ("-V", "--version"):
            return g, "version", []
        key, val = a, None
        if a.startswith("--") and "=" in a:
            key, val = a.split("=", 1)
        if key in takes_value:
            if val is None:
                if i + 1 >= len(argv):
                    raise UsageError(f"svirsh: option {key} needs a value")
                i += 1
                val = argv[i]
            setattr(g, takes_value[key], val)
        elif a in flags:
            setattr(g, flags[a], True)
        elif a == "--":
            i += 1
            break
        elif a.startswith("-"):
            raise UsageError(f"svirsh: unknown option '{a}' (see svirsh --help)")
        else:
            break
        i += 1
    if i >= len(argv):
        return g, None, []
    return g, argv[i], argv[i + 1 :]


def full_site() -> None:
    """Run the site module now if the interpreter started without it (bin/svirsh's -S).

    A request to svirtd needs nothing from site-packages, and site costs every call ~3 ms;
    direct mode (libvirt, lxml), sudo's paths and -k may import the system's packages, so
    they get site-packages added exactly as the interpreter would have at start-up (-I still
    keeps the user's site directory out)."""
    global _site_done
    if sys.flags.no_site and not _site_done:
        import site

        site.main()
    _site_done = True


_site_done = False


def site_dirs() -> None:
    """Direct mode: the system's site-packages directories on sys.path (for libvirt and
    lxml) without what site.main() also does: their .pth files and sitecustomize (Debian's
    apport hook, setuptools' distutils shim; ~2-3 ms of every direct-mode call).  Direct
    mode runs the whole site module after all when its dependencies are not found this way
    (cli/direct.py), so a package only a .pth file makes importable still works."""
    if not sys.flags.no_site or _site_done:
        return
    import site

    have = set(sys.path)
    sys.path.extend(d for d in site.getsitepackages() if d not in have and os.path.isdir(d))


def _socket_path(g: Globals) -> str:
    if g.socket:
        return g.socket
    try:  # read only the socket key; the client never needs the rest of the config
        with open(CONFIG_PATH, encoding="utf-8") as fh:
            for line in fh:
                k, sep, v = line.partition("=")
                if sep and k.strip() == "socket":
                    return v.strip()
    except OSError:
        pass
    return DEFAULT_SOCKET


def _caller_rights():
    """Under sudo, a context with the invoker's rights (files they name are opened as them);
    otherwise nothing to change: this process already has the caller's own rights."""
    if os.getuid() != 0 or not os.environ.get("SUDO_UID"):
        import contextlib

        return contextlib.nullcontext()
    from secured_virt.access.identity import sudo_invoker
    from secured_virt.access.privdrop import caller_rights

    pw = sudo_invoker()
    if pw is None:
        import contextlib

        return contextlib.nullcontext()
    return caller_rights(pw)


def _read_xml_file(path: str) -> str:
    """define/create read FILE here, with the caller's own permissions, never in the daemon
    and never as root for a sudo caller (a root-only file would be read and quoted)."""
    try:
        with _caller_rights(), open(path, encoding="utf-8") as fh:
            data = fh.read(4 * 1024 * 1024 + 1)
    except OSError as exc:
        raise UsageError(f"svirsh: cannot read {path}: {exc.strerror}") from None
    if len(data) > 4 * 1024 * 1024:
        raise UsageError(f"svirsh: {path} is larger than 4 MiB")
    return data


def emit(command: str, args: dict, reply: Reply) -> int:
    from .render import render

    if reply.status == EXIT_OK:
        out = render(command, args, reply.data)
        if out:
            sys.stdout.write(out)
        sys.stdout.flush()
        if isinstance(reply.data, dict) and reply.data.get("note") and not args.get("json"):
            sys.stderr.write(f"note: {reply.data['note']}\n")  # stdout stays virsh's
        if command == "dry-run" and isinstance(reply.data, dict) and not reply.data["allowed"]:
            return EXIT_DENIED  # "Dry Run: FAILED": starting it would be refused (exit table)
    else:
        msg = reply.message or "failed"
        if args.get("json"):
            import json

            sys.stdout.write(
                json.dumps({"error": msg, "status": reply.status, "check": reply.check}) + "\n"
            )
        else:  # virsh ends every command it ran with a blank line, failed ones too
            sys.stdout.write("\n")
            sys.stdout.flush()
        sys.stderr.write(f"error: {msg}\n")
    return reply.status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # caches of the modules loaded after the umask readable like their sources, also when
    # main() runs without start_program (in-process callers): else users recompile them
    from secured_virt.hardening import bytecode_readable_like_source

    bytecode_readable_like_source()
    os.umask(0o077)
    try:
        g, cmd_name, rest = parse_globals(argv)
        if cmd_name == "help" or (cmd_name is None and not g.forget):
            sys.stdout.write(_usage())
            return EXIT_OK if cmd_name == "help" else EXIT_USAGE
        if cmd_name == "version":
            sys.stdout.write("svirsh (secured-virt) 0.1.0\n")
            return EXIT_OK
        if cmd_name is None:  # -k alone
            return _forget(g)
        if cmd_name == "operations":
            return _operations(g, rest)
        cmd, args = parse_command(cmd_name, rest)
        if g.json:
            args["json"] = True
        if cmd.name in ("define", "create"):
            args["xml"] = _read_xml_file(args["file"])
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    try:
        route = _route(g)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    session = None
    if route == TRY:  # root's default: svirtd if it answers (one connect, kept for the request)
        from secured_virt import client

        try:
            session = client.connect(_socket_path(g))
        except client.ClientError as exc:  # e.g. a socket svirtd does not serve: never direct
            sys.stderr.write(f"error: {exc}\n")
            return exc.status
        route = DIRECT if session is None else DAEMON
    if route == DIRECT and not g.forget:
        site_dirs()  # direct mode: libvirt and lxml from the system's site-packages
    elif g.forget or _sudo_env():
        full_site()  # sudo's paths and -k may need the system's packages
    if g.forget:
        _forget(g, route)
    if route == DAEMON:
        return _via_daemon(g, cmd, args, session)
    return _direct(g, cmd, args)


DAEMON, DIRECT, TRY = "daemon", "direct", "try"


def _sudo_env() -> bool:
    """Root with sudo's variables: a caller whose sudo_invoker() decides (cheap test first)."""
    return os.getuid() == 0 and bool(os.environ.get("SUDO_UID"))


def _route(g: Globals) -> str:
    """Which way in: DAEMON, DIRECT, or TRY (root's default: svirtd if it answers, else direct).

    Decided from the options and the caller alone, without touching the socket or importing
    anything, except for a process with sudo's variables (whose invoker passwd must confirm:
    identity.sudo_invoker, as everywhere else).  Options only one way has pick that way; a
    sudo caller keeps direct mode unless they ask for --daemon."""
    if g.direct and g.daemon:
        raise UsageError("svirsh: --direct and --daemon contradict each other; give one")
    if g.daemon:
        return DAEMON
    if os.getuid() != 0:
        return DIRECT if g.direct else DAEMON
    if g.direct or g.connect or _other_config(g.config):
        return DIRECT
    if _sudo_env():
        from secured_virt.access.identity import sudo_invoker

        if sudo_invoker() is not None:
            return DIRECT  # today's behaviour for sudo callers, kept exactly
    return DAEMON if g.socket else TRY


def _other_config(path: str | None) -> bool:
    """--config names a configuration other than the host's (the one svirtd runs with)."""
    if path is None:
        return False
    return os.path.realpath(path) != os.path.realpath(CONFIG_PATH)


def _via_daemon(g: Globals, cmd, args: dict, session=None) -> int:
    """The request through svirtd; session: root's probe connection (TRY), already open."""
    from secured_virt import client

    if g.connect:
        sys.stderr.write(
            "error: --connect is only for direct mode; svirtd uses the host's "
            "configured hypervisor\n"
        )
        return EXIT_USAGE
    path = _socket_path(g)  # before a sudo caller drops root: root reads the host's config
    refused = _drop_sudo_root()
    if refused is not None:
        return refused
    root = os.getuid() == 0 and not _sudo_env()  # still root here: not a sudo caller
    if session is None and not client.daemon_available(path):
        if root:
            sys.stderr.write(
                f"error: svirtd is not running (no socket at {path}); --daemon and --socket "
                "ask for svirtd.  Start it (systemctl start svirtd.socket), or run svirsh "
                "without them (or with --direct) to run the request in-process.\n"
            )
        else:
            sys.stderr.write(
                f"error: svirtd is not running (no socket at {path}).  Non-root users manage "
                "VMs through svirtd; ask the administrator to start it (systemctl start "
                "svirtd.socket), or run svirsh with sudo if you are allowed to.\n"
            )
        return EXIT_FAILED
    if root and not g.as_user and cmd.name in _ROOT_PATHS and args.get("file"):
        # root's save/restore/dump FILE is a host path, taken as given (service.save_path);
        # svirtd would resolve a relative one against its own working directory, not ours
        args["file"] = os.path.abspath(args["file"])
    if cmd.name == "console":
        from secured_virt.hardening import long_lived

        long_lived()
        kw = {"escape": args["escape"]} if args.get("escape") else {}
        return client.console(path, args["domain"], as_user=g.as_user, session=session, **kw)
    req = Request(
        cmd.name,
        {k: v for k, v in args.items() if v is not None and k != "json"},
        as_user=g.as_user,
    )
    try:
        reply = client.call(
            path,
            req,
            password_cb=client.tty_password,
            progress_cb=client.print_progress,
            session=session,
        )
    except client.ClientError as exc:
        hint = "  (As root, svirsh --direct runs it in-process.)" if root else ""
        sys.stderr.write(f"error: {exc}{hint}\n")
        return exc.status
    return emit(cmd.name, args, reply)


#: commands whose FILE root names as a host path (anyone else: a name in their save directory)
_ROOT_PATHS = frozenset({"save", "restore", "dump"})


def _drop_sudo_root() -> int | None:
    """Under sudo, become the invoking user for good before talking to svirtd.

    svirtd identifies its peer by SO_PEERCRED; a root process would be served with root's
    rights and audited as root.  Nothing after this point needs root (the reply is printed,
    a password is read from the caller's terminal), so root is dropped entirely rather than
    only for the connect.  None = go on; else the exit status (3: we could not drop, and
    going on as root is exactly what must not happen)."""
    if os.getuid() != 0 or not os.environ.get("SUDO_UID"):
        return None
    from secured_virt.access.identity import sudo_invoker
    from secured_virt.access.privdrop import become

    pw = sudo_invoker()
    if pw is None:
        return None
    try:
        become(pw)
    except OSError as exc:
        sys.stderr.write(
            f"error: running through sudo for {pw.pw_name}, svirsh must reach svirtd as "
            f"{pw.pw_name}, not as root, and could not drop root ({exc}); refused.  Run "
            "svirsh without sudo to go through svirtd.\n"
        )
        return EXIT_DENIED
    return None


def _direct(g: Globals, cmd, args: dict) -> int:
    if os.getuid() != 0:
        sys.stderr.write(
            f"error: direct mode is for root: as uid {os.getuid()} you cannot hold the "
            "hypervisor connection or write the audit log.  Go through svirtd (the default) "
            "or use sudo.\n"
        )
        return EXIT_DENIED
    from .direct import run_direct

    return run_direct(g, cmd, args, emit)


def _forget(g: Globals, route: str | None = None) -> int:
    """svirsh -k, wherever the command goes: through svirtd when that is the way in (root's
    default when svirtd answers), else here."""
    from .direct import forget_credentials

    if route is None:  # -k alone
        route = _route(g)
        if route == TRY:
            from secured_virt import client

            try:
                probe = client.connect(_socket_path(g))
            except client.ClientError as exc:
                sys.stderr.write(f"error: {exc}\n")
                return exc.status
            route = DIRECT if probe is None else DAEMON
            if probe is not None:
                probe.close()
    if route == DAEMON:
        g.daemon = True  # forget_credentials asks svirtd for root only when told to
    return forget_credentials(g, _socket_path(g))


def _operations(g: Globals, rest: list[str]) -> int:
    from secured_virt.access.operations import CATALOGUE, render_catalogue

    sys.stdout.write(render_catalogue(CATALOGUE, as_json=g.json or "--json" in rest))
    return EXIT_OK


def entry(*, require_isolated: bool = True) -> None:
    """The program: the console script, bin/ launcher and ``python -m`` start here, hardened
    first (secured_virt.hardening.start_program); never returns."""
    from secured_virt.hardening import start_program

    start_program(main, require_isolated=require_isolated, quick_exit=True)


if __name__ == "__main__":  # python -m: the caller chose the interpreter's flags
    entry(require_isolated=False)
