"""Starting the ``xl`` process, and reading what its failures mean.

This is the only module of the xl backend that starts a process, so the rules below are
enforced in one place (``run_xl``) and the tests replace ``subprocess.run`` here only:

* argv lists with xl's absolute path (a constructor argument, default /usr/sbin/xl);
* callers put ``--`` before the first operand: xl parses options with getopt_long, which
  stops at ``--``, so a domain name or path can never be taken for an option (``-a`` would
  mean "all");
* an environment holding only ``PATH=/usr/sbin:/usr/bin:/sbin:/bin`` (nothing from the
  caller: no LD_*, no XL_* overrides, no locale games);
* stdin from /dev/null and a timeout on every call.

It knows nothing of config files; whether "no such domain" from xl means the domain is
merely not running is decided by the caller (xl_core), which can look for its config.
"""

from __future__ import annotations

import re
import subprocess

from .base import BackendError

XL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
DEFAULT_XL = "/usr/sbin/xl"

_LIBXL_PREFIX = re.compile(r"^libxl: (?:error|warning): [^:]+:\d+:[^:]+: (?:Domain \d+:)?\s*")
_NOT_FOUND = ("is an invalid domain identifier", "does not exist", "maybe this domain does not")


def run_xl(xl_path: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``xl ARGS`` (argv, no shell, scrubbed env, timeout); the only process spawn."""
    argv = [xl_path, *args]
    try:
        return subprocess.run(
            argv,
            env=dict(XL_ENV),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            close_fds=True,
        )
    except FileNotFoundError:
        raise BackendError(
            "connection",
            f"cannot run {xl_path}: no such file (is Xen's toolstack installed? "
            "set xl_path in secured-virt.conf)",
        ) from None
    except PermissionError:
        raise BackendError(
            "connection",
            f"cannot run {xl_path}: permission denied (xl needs root: non-root users "
            "must go through svirtd or sudo)",
        ) from None
    except subprocess.TimeoutExpired:
        raise BackendError(
            "timeout", f"`xl {args[0]}` did not finish within {timeout:.0f} seconds"
        ) from None


def output_of(r: subprocess.CompletedProcess) -> str:
    """Everything xl printed, stderr first (xl puts some of its complaints on stdout)."""
    return f"{r.stderr or ''}\n{r.stdout or ''}"


def says_not_found(text: str) -> bool:
    """Whether xl's output says the domain it was given does not exist (as a running domain)."""
    return any(s in text for s in _NOT_FOUND)


def failure(action: str, name: str | None, err: str) -> BackendError:
    """The error for a failed xl call other than "no such domain" (see xl_core)."""
    if "cannot init xl context" in err or "privcmd" in err:
        return BackendError(
            "connection",
            "cannot reach the Xen hypervisor (xl: cannot init xl context): is this a Xen "
            "dom0 with xenfs mounted, and running as root?",
        )
    where = f" domain '{name}'" if name is not None else ""
    return BackendError("operation-failed", f"cannot {action}{where}: {detail(err)}")


def detail(text: str) -> str:
    """The most telling line of xl's stderr: the first libxl error, else the last line."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("libxl: error"):
            return _LIBXL_PREFIX.sub("", ln)[:300]
    return lines[-1][:300] if lines else "xl failed without saying why"
