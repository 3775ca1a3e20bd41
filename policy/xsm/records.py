"""The record every policy-changing XSM call returns: :class:`PolicyState`.

Why a module of its own: both the host (``set_policy``, ``reset_policy``) and the policy editor
(every edit of an installed policy) answer with these records.  With the record here, the
editor does not need to import the host that hands out editors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..constants import XS_POLICY_ACM
from ..errors import UpdateError, Xserr


@dataclass(frozen=True)
class PolicyState:
    """Xen-API ``xs_policystate``: the outcome of a policy call and the policy's state.

    ``xserr`` 0 on success, else an XSERR code; ``message`` says what happened (and what to do);
    ``xs_ref`` the policy's name; ``repr`` its XML; ``type`` XS_POLICY_ACM; ``flags``
    XS_INST_BOOT|XS_INST_LOAD as they are now; ``version``; ``errors`` Xen's (code, detail)
    pairs from the (emulated) hypervisor; ``problems`` one sentence per problem.
    """

    xserr: int
    message: str
    xs_ref: str = ""
    repr: str = ""
    type: int = XS_POLICY_ACM
    flags: int = 0
    version: str = ""
    errors: list[tuple[int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.xserr == 0

    @property
    def xserr_name(self) -> str:
        try:
            return Xserr(self.xserr).name
        except ValueError:
            return str(self.xserr)

    def as_dict(self) -> dict[str, Any]:
        return {
            "xserr": self.xserr,
            "xserr_name": self.xserr_name,
            "message": self.message,
            "xs_ref": self.xs_ref,
            "repr": self.repr,
            "type": self.type,
            "flags": self.flags,
            "version": self.version,
            "errors": [list(e) for e in self.errors],
            "problems": list(self.problems),
        }


def failed(
    xserr: Xserr | int,
    message: str,
    errors: Iterable[UpdateError] = (),
    problems: Iterable[str] = (),
) -> PolicyState:
    """A failed call's PolicyState: ``errors`` become Xen's (code, detail) pairs and, when no
    ``problems`` are given, the sentences of the errors (or ``message`` alone) are the problems.
    """
    errs = list(errors)
    return PolicyState(
        xserr=int(xserr),
        message=message,
        errors=[e.pair for e in errs],
        problems=list(problems) or [e.message for e in errs] or [message],
    )
