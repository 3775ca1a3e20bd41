"""Start-up hygiene for the CLIs and the daemon, after sudo's (see docs in the module functions).

A root-run front-end inherits whatever its caller set up: closed standard fds (so the next
file we open becomes "stdout"), stray fds, a hostile umask, and an environment full of knobs
(``LD_*``, ``PYTHON*``, ``IFS``, ``DISPLAY``...).  ``harden_process`` normalises all of that
once, first thing in ``main``; ``scrubbed_env`` is the only environment handed to
subprocesses (editor, ``xl``).

Python-level knobs (PYTHONPATH, PYTHONSTARTUP, PYTHONINSPECT, user site, a ``sitecustomize``
on the path) are acted on by the interpreter *before* any of our code runs, so only the
interpreter's own flag can stop them: every installed program runs ``python -I`` (the ``bin/``
launchers' first line; the venv's console scripts get the same first line from ``make setup``).
``start_program`` is the one start-up every program shares — the console scripts, the ``bin/``
launchers and ``python -m`` all call it through the program's ``entry()`` — so none of them can
skip the hardening: it refuses root in a Python that is not isolated (code from PYTHONPATH may
already have run; say so loudly rather than carry on), then ``harden_process``, then ``main()``.
``harden_process`` itself refuses to continue when the effective uid differs from the real uid
and the interpreter is not isolated — that is a privilege boundary crossed without ``-I``.
"""

from __future__ import annotations

import os
import resource
import sys

__all__ = [
    "SECURE_PATH",
    "HardeningError",
    "check_argv",
    "close_extra_fds",
    "ensure_std_fds",
    "harden_process",
    "scrub_environment",
    "scrubbed_env",
    "start_program",
]

SECURE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

#: kept only if the value passes ``_env_check_ok`` (sudo's env_check: no '%' or '/')
_CHECKED = ("TERM", "LANG", "LANGUAGE", "LINGUAS", "COLORTERM")
_CHECKED_PREFIX = ("LC_",)
#: kept (root only) if they look like a uid and a user name; identity.py decides if they count
#: (no ``re`` here: this module is on every client's start-up path, and re costs milliseconds)
_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")
_NAME_REST = _NAME_FIRST | frozenset("@-")


def _is_id(value: str) -> bool:
    return 1 <= len(value) <= 10 and value.isascii() and value.isdigit()


def _is_user_name(value: str) -> bool:
    return (
        1 <= len(value) <= 64
        and value[0] in _NAME_FIRST
        and all(c in _NAME_REST for c in value[1:])
    )


_SUDO_VARS = {"SUDO_UID": _is_id, "SUDO_GID": _is_id, "SUDO_USER": _is_user_name}
_MAX_VALUE = 4096
#: kept verbatim if printable and bounded: read only by svirt-admin edit when the host's
#: configuration says ``allow_env_editor = yes``, and then checked there (absolute path or a
#: trusted program, no "--"); dropping them here made that setting dead for every launcher
_EDITOR_VARS = ("SUDO_EDITOR", "VISUAL", "EDITOR")
#: exit status when the process was started in a way we refuse (EXIT_BAD_POLICY: how the
#: program is installed or started is configuration, and nothing was attempted)
_EXIT_REFUSED = 4


class HardeningError(Exception):
    """The process was started in a way we refuse to run in."""


def _env_check_ok(value: str) -> bool:
    return (
        len(value) <= _MAX_VALUE
        and "%" not in value
        and "/" not in value
        and not value.startswith("()")
        and value.isprintable()
    )


def _is_checked_name(name: str) -> bool:
    return name in _CHECKED or name.startswith(_CHECKED_PREFIX)


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for subprocesses: secure PATH, checked TERM/LANG/LC_*, ``extra``."""
    env = {"PATH": SECURE_PATH}
    for name, value in os.environ.items():
        if _is_checked_name(name) and _env_check_ok(value):
            env[name] = value
    env.setdefault("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def scrub_environment(keep: tuple[str, ...] = ()) -> None:
    """Reduce os.environ in place to PATH, checked TERM/LANG/LC_*, sane SUDO_* (real uid 0 only),
    the editor variables (bounded, printable), and the names in ``keep`` (e.g. systemd's
    LISTEN_FDS, set by a trusted parent)."""

    def wanted(name: str, value: str) -> bool:
        if name in keep:
            return True
        if _is_checked_name(name):
            return _env_check_ok(value)
        if name in _EDITOR_VARS:
            return len(value) <= _MAX_VALUE and value.isprintable() and not value.startswith("()")
        valid = _SUDO_VARS.get(name)
        return valid is not None and os.getuid() == 0 and valid(value)

    new = {"PATH": SECURE_PATH}
    new.update((n, v) for n, v in os.environ.items() if n != "PATH" and wanted(n, v))
    os.environ.clear()
    os.environ.update(new)


def ensure_std_fds() -> None:
    """Open /dev/null on any of fds 0-2 that is closed, so later files never become stdio."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def close_extra_fds(keep: tuple[int, ...] = ()) -> None:
    """Close every fd >= 3 except those in ``keep`` (like sudo's closefrom)."""
    start = 3
    for fd in sorted(f for f in set(keep) if f >= 3):
        if fd > start:
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, max(start + 1, os.sysconf("SC_OPEN_MAX")))


def check_argv(argv: list[str]) -> str:
    """Refuse argc == 0 (CVE-2021-4034 style), return the program name for messages."""
    if not argv or not argv[0]:
        raise HardeningError(
            "started without a program name (argc == 0 or empty argv[0]); refusing to run"
        )
    return os.path.basename(argv[0])


def harden_process(
    *, keep_fds: tuple[int, ...] = (), keep_env: tuple[str, ...] = (), argv=None
) -> None:
    """Normalise the process before anything else runs.  Call first thing in main().

    umask 077 (state we create is private unless we chmod it), fds 0-2 open, fds >= 3 closed
    (except ``keep_fds``), environment scrubbed, no core dumps (passwords pass through us).
    """
    check_argv(sys.argv if argv is None else argv)
    if os.geteuid() != os.getuid() and not sys.flags.isolated:
        raise HardeningError(
            "effective uid differs from real uid but Python is not running isolated (-I); "
            "use the bin/ launchers"
        )
    os.umask(0o077)
    bytecode_readable_like_source()
    ensure_std_fds()
    close_extra_fds(keep_fds)
    scrub_environment(keep_env)
    try:  # noqa: SIM105 - contextlib costs every client ~3 ms of imports
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):  # a limit we cannot lower is not fatal
        pass


def _share_like_source(pyc: str, source_mode: int) -> None:
    """Give a byte-code file (and the __pycache__ it is in) the read access its source has."""
    try:
        want = source_mode & 0o644  # what the source grants, never write for others
        if os.stat(pyc).st_mode & 0o777 != want:
            os.chmod(pyc, want)
        cache = os.path.dirname(pyc)
        st = os.stat(cache)
        share = os.stat(os.path.dirname(cache)).st_mode & 0o055  # the package dir's r-x
        if st.st_uid == os.geteuid() and st.st_mode & 0o055 != share:
            os.chmod(cache, (st.st_mode & 0o700) | share)
    except OSError:  # a cache we cannot fix is only slower, never wrong
        pass


def bytecode_readable_like_source() -> None:
    """Byte-code written after umask 077 gets its source's read access, not 0600.

    Modules imported after the hardening (everything lazily loaded: the client, direct mode)
    would otherwise be cached as 0600 files in 0700 __pycache__ directories: root's runs would
    leave caches no other user can read, and every user's svirsh would recompile those
    modules on each start (a stale cache is rewritten only by someone who may write it, so
    not writing any was no better).  A .pyc holds nothing its source does not show, so it
    gets the source's read bits and its __pycache__ the package directory's; never more."""
    from importlib import machinery

    loader = machinery.SourceFileLoader
    if getattr(loader.set_data, "shares_like_source", False):
        return
    original = loader.set_data

    def set_data(self, path, data, *, _mode=0o666):
        original(self, path, data, _mode=_mode)
        if _mode != 0o666:  # byte-code (its source's mode); plain data keeps the default
            _share_like_source(path, _mode)

    set_data.shares_like_source = True
    loader.set_data = set_data


def systemd_fds() -> dict:
    """harden_process() arguments that keep systemd's socket-activation fds and variables.

    Only when LISTEN_PID names this very process (as sd_listen_fds requires): a stale or
    inherited LISTEN_FDS from an unrelated parent keeps nothing open.
    """
    env = os.environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return {}
    try:
        n = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return {}
    if not 0 < n < 64:
        return {}
    return {
        "keep_fds": tuple(range(3, 3 + n)),
        "keep_env": ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"),
    }


def _program_name() -> str:
    name = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return os.path.basename(name) or "secured-virt"


def one_shot_collector() -> None:
    """A one-shot client runs without Python's cyclic garbage collector: what its imports
    and its one request allocate is freed by reference counting or at exit, and the passes
    the collector made over it meanwhile were ~5% of root's direct mode (~3 ms: it imports
    the service and loads the policy in-process; bench_client.py, same sitting).  A session
    that stays (a console) turns it back on: ``long_lived()``."""
    import gc

    gc.disable()


def long_lived() -> None:
    """The client is entering a session of unbounded length (a console): the collector runs
    again, so cyclic garbage cannot pile up for hours."""
    import gc

    gc.enable()


def _quick_exit(status) -> None:
    """End a finished one-shot client without the interpreter's teardown (~1.5 ms of every
    svirsh call: module and object clean-up nobody will see).  Only when nothing else runs:
    output is flushed here (a failure is left to the normal exit, which reports it), and with
    a second thread alive the normal exit is kept."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    if status is None:
        status = 0
    if isinstance(status, int) and not isinstance(status, bool) and 0 <= status <= 255:
        os._exit(status)


def start_program(
    main, *, daemon: bool = False, require_isolated: bool = True, quick_exit: bool = False
):
    """Start a program of secured-virt: the one start-up every entry point calls first.

    ``main()`` runs only after the process is hardened (``harden_process``; for the daemon the
    systemd socket-activation fds and variables are kept).  With ``require_isolated`` (the
    installed console scripts and the ``bin/`` launchers), a process whose real or effective uid
    is 0 refuses to run in a Python that is not isolated: PYTHONPATH, PYTHONSTARTUP, the user
    site and a ``sitecustomize`` were honoured before this function could run, so the install is
    broken (a console script regenerated without ``-I``) and root must not go on in it.  Only
    ``python -m`` passes ``require_isolated=False``: whoever types that chose the interpreter's
    flags themselves.  Exits with main()'s status, or 4 when refused; with ``quick_exit`` (a
    one-shot client: svirsh) without the interpreter's teardown when that is safe.
    """
    prog = _program_name()
    if require_isolated and not sys.flags.isolated and 0 in (os.getuid(), os.geteuid()):
        sys.stderr.write(
            f"{prog}: refusing to run as root in a Python that is not isolated (-I): "
            "PYTHONPATH, PYTHONSTARTUP and the user site directory were honoured before "
            f"{prog} started, so code from them may already have run.  Run {prog} through a "
            "script whose first line runs python with -I (bin/ in the source tree; "
            "`make setup` writes the same first line into the venv's scripts).\n"
        )
        sys.exit(_EXIT_REFUSED)
    try:
        harden_process(**(systemd_fds() if daemon else {}))
    except HardeningError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        sys.exit(_EXIT_REFUSED)
    if quick_exit:
        one_shot_collector()
    status = main()
    if quick_exit:
        _quick_exit(status)
    sys.exit(status)
