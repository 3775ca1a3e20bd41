"""Whether ``audit_syslog = yes`` can work on this host.

Python's ``syslog`` (glibc's ``syslog(3)``) sends to the ``/dev/log`` socket and drops the
line without a word when nothing listens there -- a container without a syslog daemon, or a
host whose journald socket is missing.  The audit file still gets every record, but an admin
who set ``audit_syslog = yes`` believes a second copy leaves the host.  svirtd says so once
when it starts and ``svirt-admin status`` shows it, instead of silence.
"""

from __future__ import annotations

import os
import stat

__all__ = ["DEV_LOG", "audit_syslog_problem"]

DEV_LOG = "/dev/log"


def audit_syslog_problem(enabled: bool, path: str = DEV_LOG) -> str | None:
    """None when syslog is off or ``path`` is a socket; else the sentence to tell the admin."""
    if not enabled:
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        why = f"there is no {path} ({exc.strerror})"
    else:
        if stat.S_ISSOCK(st.st_mode):
            return None
        why = f"{path} is not a socket"
    return (
        f"audit_syslog = yes, but {why}: no syslog daemon receives the audit lines, so they "
        "go to the audit log file only.  Start a syslog daemon (rsyslog, or journald's "
        "socket), or set audit_syslog = no to say that the file is the only copy."
    )
