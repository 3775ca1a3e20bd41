"""Rules for policy, label and type names, and where a policy lives on disk.

Why these rules: names end up in places with their own syntax.  A ``:`` would break the label
string ``ACM:<policy>:<label>`` (Xen rejects it too); whitespace would break the whitespace-
separated map file; ``,`` and ``=`` cannot be written in the VM config form
``access_control = ['policy=P,label=L']``; and a policy name becomes a path (its dots become
directories), so it must never be able to climb out of the policy directory.
"""

from __future__ import annotations

import re

from .constants import POLICY_FILE_SUFFIX
from .errors import Xserr

MAX_NAME_LENGTH = 256

# Policy names: dot-separated components of letters, digits, '_', '-', '+'; no empty component.
_POLICY_NAME_RE = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*\Z")
_FORBIDDEN_IN_LABEL = re.compile(r"[\s:,=\x00-\x1f\x7f]")
_FORBIDDEN_IN_TYPE = re.compile(r"[\s\x00-\x1f\x7f]")


def policy_name_problem(name: str) -> tuple[Xserr, str] | None:
    """Why ``name`` is not a usable policy name, or None when it is."""
    if not name:
        return Xserr.BAD_POLICY_NAME, "the policy name is empty"
    if ":" in name:
        return (
            Xserr.BAD_POLICY_NAME,
            f"policy name {name!r} contains ':', which separates the parts of a label "
            "string ACM:<policy>:<label>; choose a name without ':'",
        )
    if len(name) > MAX_NAME_LENGTH:
        return Xserr.BAD_POLICY_NAME, f"policy name is longer than {MAX_NAME_LENGTH} characters"
    if not _POLICY_NAME_RE.match(name):
        return (
            Xserr.BAD_POLICY_NAME,
            f"policy name {name!r} may only hold letters, digits, '_', '-', '+' in "
            "dot-separated parts (its dots become directories on disk)",
        )
    return None


def label_name_problem(name: str, what: str = "label") -> tuple[Xserr, str] | None:
    """Why ``name`` is not a usable label name, or None when it is."""
    if not name:
        return Xserr.BAD_LABEL, f"{what} name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return Xserr.BAD_LABEL, f"{what} name is longer than {MAX_NAME_LENGTH} characters"
    m = _FORBIDDEN_IN_LABEL.search(name)
    if m:
        ch = m.group()
        why = {
            ":": "':' separates the parts of a label string ACM:<policy>:<label>",
            ",": "',' cannot be written in access_control = ['policy=P,label=L']",
            "=": "'=' cannot be written in access_control = ['policy=P,label=L']",
        }.get(ch, "whitespace and control characters would break the map file")
        return Xserr.BAD_LABEL, f"{what} name {name!r} contains {ch!r}: {why}"
    return None


def type_name_problem(name: str, component: str) -> tuple[Xserr, str] | None:
    """Why ``name`` is not a usable type name, or None when it is."""
    if not name:
        return Xserr.POLICY_INCONSISTENT, f"an empty {component} type name is defined"
    if len(name) > MAX_NAME_LENGTH:
        return Xserr.POLICY_INCONSISTENT, f"{component} type name is too long"
    if _FORBIDDEN_IN_TYPE.search(name):
        return (
            Xserr.POLICY_INCONSISTENT,
            f"{component} type name {name!r} contains whitespace or a control character, "
            "which would break the map file",
        )
    return None


def policy_relpath(name: str) -> str:
    """Xen's file location for a policy: ``example.test`` -> ``example/test-security_policy.xml``.

    Raises ValueError for names that could not be used safely as a path.
    """
    return policy_stem(name) + POLICY_FILE_SUFFIX


def policy_stem(name: str) -> str:
    """``example.test`` -> ``example/test``: the path the .xml, .map and .bin files share."""
    problem = policy_name_problem(name)
    if problem:
        raise ValueError(problem[1])
    return "/".join(name.split("."))
