"""Acting with the invoking user's rights while running as root for them (sudo).

Under sudo the process is root but the caller is not.  Two things must then be done with the
*caller's* rights, never root's:

* files named on the command line are opened as the caller (like sudoedit): otherwise
  ``sudo svirsh define /root/secret.xml`` reads a root-only file and its parse error quotes it;
* svirtd is reached as the caller: the daemon learns who asks from SO_PEERCRED, which reports
  the *effective* uid/gid at ``connect()``, so a root process would be served as root.

``caller_rights(pw)`` switches the effective uid and gid and the supplementary groups to the
caller's for one step and back afterwards.  The real and saved uid stay 0 (that is how root's
rights come back); meanwhile the caller cannot signal or trace us (the kernel checks the real
and saved ids, and a process whose credentials changed is not dumpable).  ``become(pw)`` drops
root for good — real, effective and saved ids and groups — and checks it cannot be regained:
for a process with nothing left to do as root (``sudo svirsh --daemon ...``).

Both refuse (``PermissionError``) rather than go on as root when they cannot switch.
"""

from __future__ import annotations

import contextlib
import os
import pwd

__all__ = ["become", "caller_rights"]


def _groups(pw: pwd.struct_passwd) -> list[int]:
    return os.getgrouplist(pw.pw_name, pw.pw_gid)


@contextlib.contextmanager
def caller_rights(pw: pwd.struct_passwd):
    """Effective uid/gid and groups of ``pw`` inside the block; root's again after it."""
    if os.geteuid() == pw.pw_uid and os.getegid() == pw.pw_gid:
        yield  # already the caller (nested, or root dropped for good)
        return
    if os.geteuid() != 0:
        raise PermissionError(
            f"cannot take on {pw.pw_name}'s rights: this process is uid {os.geteuid()}, not root"
        )
    saved_groups, saved_egid = os.getgroups(), os.getegid()
    os.setgroups(_groups(pw))
    try:
        os.setegid(pw.pw_gid)
        try:
            os.seteuid(pw.pw_uid)
            try:
                yield
            finally:
                os.seteuid(0)
        finally:
            os.setegid(saved_egid)
    finally:
        os.setgroups(saved_groups)


def become(pw: pwd.struct_passwd) -> None:
    """Drop root for good: real, effective and saved uid/gid and the groups become ``pw``'s."""
    os.setgroups(_groups(pw))
    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    if os.getresuid() != (pw.pw_uid,) * 3 or os.getresgid() != (pw.pw_gid,) * 3:
        raise PermissionError(f"could not become {pw.pw_name} (uid {pw.pw_uid}) for good")
    if pw.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PermissionError(f"became {pw.pw_name}, yet root could be regained: refusing")
