"""Running a program as another real user, so the kernel, not the test, says who asks.

One argv prefix for every test, bench and test helper that starts a client, a listener or a
front-end as another uid: ``setpriv`` with that user's real uid and gid and no supplementary
groups (the groups a role may come through are the user's own, never root's)."""

from __future__ import annotations

import pwd

SETPRIV = "/usr/bin/setpriv"


def setpriv_prefix(user: pwd.struct_passwd | None) -> list[str]:
    """The argv prefix that runs a program as ``user`` (nothing for ``None``: as the caller,
    normally root)."""
    if user is None:
        return []
    return [SETPRIV, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
