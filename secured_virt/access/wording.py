"""Decision reasons worded for the person reading them.

rbac knows only the UA file, so to it a name without a ``<User>`` entry (and in none of its
groups) is "unknown".  Said to a real account — ``nobody``, or a user who simply was never
given a role — "unknown" reads as "no such user" and sends the admin looking in the wrong
place.  Here, where accounts are known, such a reason says what is true: the account has no
roles.  A name with no account keeps rbac's wording.
"""

from __future__ import annotations

import pwd

__all__ = ["rbac_reason"]


def _is_account(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except (KeyError, ValueError):  # ValueError: a name with a NUL byte
        return False
    return True


def rbac_reason(user: str, reason: str) -> str:
    """``reason`` with "user 'X' unknown" said as "user 'X' has no roles" when X is a real
    account; any other reason unchanged."""
    head = f"user '{user}' unknown"
    if not reason.startswith(head) or not _is_account(user):
        return reason
    rest = reason[len(head) :]
    if not rest:
        rest = ": the UA policy has no <User> entry for them"
    return f"user '{user}' has no roles{rest}"
