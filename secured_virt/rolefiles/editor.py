"""Choosing and running the editor for ``svirt-admin edit``, the way sudo/visudo do it safely.

* The editor is the configuration's ``editor`` (an absolute path).  The caller's
  ``SUDO_EDITOR``/``VISUAL``/``EDITOR`` are consulted only when the configuration says
  ``allow_env_editor = yes`` — like sudo's ``env_editor``, that lets whoever sets the variable
  choose a program that runs as root.
* The editor runs from an argv list, never a shell; its arguments from the variable are split
  like a shell would (quotes), but a ``--`` among them is refused (CVE-2023-22809: sudoedit let
  ``EDITOR='vim -- /etc/shadow'`` add files to edit).  The file to edit comes after our own
  ``--``, so a file name can never be read as an option.
* The program must be a regular executable owned by root and writable by nobody else, in
  directories only root can change — the same trust the policy files need, since it runs as
  root on root's behalf.  Names without a slash are looked up in the secure PATH only.
* It runs with a scrubbed environment (secure PATH, checked TERM/LANG/LC_*, HOME of the user
  it runs as).  For a delegated admin (``sudo svirt-admin edit``) it runs as that user, like
  sudoedit: an editor's shell escape then gives them nothing they did not have.
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
import subprocess

from secured_virt.fsutil import UnsafeFileError, check_ancestors
from secured_virt.hardening import SECURE_PATH, scrubbed_env

__all__ = ["ENV_EDITOR_VARS", "EditorError", "choose_editor", "editor_choice", "run_editor"]

ENV_EDITOR_VARS = ("SUDO_EDITOR", "VISUAL", "EDITOR")


class EditorError(Exception):
    """No safe editor could be chosen; the message says why and what to change."""


def _trusted_program(path: str, what: str) -> str:
    """``path`` if it is a root-owned regular executable nobody else can change."""
    try:
        check_ancestors(path)
        real = os.path.realpath(path)
        check_ancestors(real)
        st = os.stat(real)
    except UnsafeFileError as exc:
        raise EditorError(f"{what} {path}: {exc}") from None
    except OSError as exc:
        raise EditorError(f"{what} {path} cannot be used: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise EditorError(f"{what} {path} is not an executable file")
    if st.st_uid != 0:
        raise EditorError(
            f"{what} {path} is owned by uid {st.st_uid}, not root; it would run as root"
        )
    if st.st_mode & 0o022:
        raise EditorError(
            f"{what} {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); it would run as root"
        )
    return path


def _lookup(name: str) -> str | None:
    for d in SECURE_PATH.split(":"):
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _from_env(var: str, value: str) -> list[str]:
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise EditorError(f"${var} ({value!r}) cannot be split into words: {exc}") from None
    if not argv:
        raise EditorError(f"${var} is empty")
    if "--" in argv[1:]:
        raise EditorError(
            f"${var} ({value!r}) contains '--': refused, it could name other files to edit"
        )
    prog = argv[0]
    if "/" not in prog:
        found = _lookup(prog)
        if found is None:
            raise EditorError(f"${var}: {prog} is not in the secure PATH ({SECURE_PATH})")
        prog = found
    elif not prog.startswith("/"):
        raise EditorError(f"${var}: {prog} must be an absolute path or a plain command name")
    return [_trusted_program(prog, f"${var}:"), *argv[1:]]


def choose_editor(config, environ=None) -> list[str]:
    """The editor's argv (without the file), from the configuration and maybe the caller."""
    return editor_choice(config, environ)[0]


def editor_choice(config, environ=None) -> tuple[list[str], str]:
    """(argv, why): the editor and a sentence saying why it is that one, so the admin is
    never left guessing whether their $EDITOR was used (it is only with allow_env_editor)."""
    environ = os.environ if environ is None else environ
    where = f" in {config.source}" if getattr(config, "source", None) else ""
    if config.allow_env_editor:
        for var in ENV_EDITOR_VARS:
            value = environ.get(var)
            if value:
                return _from_env(var, value), f"from ${var} (allow_env_editor = yes{where})"
    why = f"the configured editor (editor = {config.editor}{where})"
    ignored = [v for v in ENV_EDITOR_VARS if environ.get(v)]
    if ignored and not config.allow_env_editor:
        names = "/".join(f"${v}" for v in ignored)
        why += (
            f"; {names} ignored: allow_env_editor = no (set it to yes to let the caller "
            "choose the editor, as sudo's env_editor does)"
        )
    elif not config.allow_env_editor:
        why += "; allow_env_editor = yes would let SUDO_EDITOR, VISUAL or EDITOR choose"
    return [_trusted_program(config.editor, "the configured editor (editor =)")], why


def run_editor(argv: list[str], path: str, *, run_as: pwd.struct_passwd | None = None) -> int:
    """Run ``argv -- path`` in the foreground; returns its exit status (negative: signal)."""
    user = run_as if run_as is not None else pwd.getpwuid(os.geteuid())
    env = scrubbed_env({"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name})
    kwargs = {}
    if run_as is not None and run_as.pw_uid != os.geteuid():
        kwargs = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}
    try:
        proc = subprocess.run(
            [*argv, "--", path],
            env=env,
            cwd=os.path.dirname(path),
            check=False,
            close_fds=True,
            **kwargs,
        )
    except OSError as exc:
        raise EditorError(f"cannot run the editor {argv[0]}: {exc.strerror}") from None
    return proc.returncode
