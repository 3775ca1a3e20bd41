"""Label strings: ``ACM:<policy>:<label>``, and the (policy name, label name) pair behind them.

Why names and not ssidrefs (seed 001): an ssidref is a local index that changes with every
policy compilation and differs between hosts; the pair (policy name, label name) means the same
thing everywhere, and is translated to the local ssidref only when a domain is instantiated.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .constants import ACM_POLICY_ID, INACCESSIBLE, INACCESSIBLE_POLICY, INVALID_POLICY_PREFIX
from .errors import LabelError, Xserr


class Label(NamedTuple):
    """A label by name: ``Label("xm-test", "blue")``; ``kind`` is ``ACM`` or ``INV_ACM``."""

    policy: str
    name: str
    kind: str = ACM_POLICY_ID

    def __str__(self) -> str:
        return f"{self.kind}:{self.policy}:{self.name}"

    @property
    def valid(self) -> bool:
        return self.kind == ACM_POLICY_ID

    def invalidated(self) -> Label:
        """The label marked ``INV_ACM``: its policy changed and it no longer exists."""
        if not self.valid:
            return self
        return Label(self.policy, self.name, INVALID_POLICY_PREFIX + self.kind)


INACCESSIBLE_LABEL = Label(INACCESSIBLE_POLICY, INACCESSIBLE)


def format_label(policy_name: str, label: str, kind: str = ACM_POLICY_ID) -> str:
    """``format_label("example.client_v1", "dom_Fun")`` -> ``"ACM:example.client_v1:dom_Fun"``."""
    return f"{kind}:{policy_name}:{label}"


#: seed 000's display format of a label record: ``(POLICY_SHYPE, "test-wld:dom_System")``
_RECORD_FORM = re.compile(r"""\(\s*([A-Za-z_]+)\s*,\s*(["'])(.*)\2\s*\)\Z""", re.S)
#: the xsmtype names seed 000 and Xen's Xen-API used for the sHype/ACM policy type
_SHYPE_TYPES = frozenset({"POLICY_SHYPE", "XS_POLICY_ACM", "ACM", "SHYPE"})
#: seed 000's resource/VM spelling ``sHype:res:test-wld:green`` (``sHype:vm:...``)
_SHYPE_KINDS = frozenset({"vm", "res", "resource"})


def parse_label(text: str | Label, default_policy: str | None = None) -> Label:
    """Read a label in any of the forms Xen's tools or the seeds used.

    ``ACM:<policy>:<label>`` (Xen 3.3, and what is always written back),
    ``INV_ACM:<policy>:<label>``, ``<policy>:<label>``, the VM config form
    ``policy=<policy>,label=<label>``, seed 000's ``sHype:vm|res:<policy>:<label>`` and its
    label-record display ``(POLICY_SHYPE, "<policy>:<label>")``, or a bare ``<label>`` (which
    needs ``default_policy``, normally the active policy).  Raises LabelError
    (BAD_LABEL_FORMAT, or WRONG_POLICY_TYPE for a policy type other than sHype/ACM).
    """
    if isinstance(text, Label):
        return text
    if not isinstance(text, str) or not text.strip():
        raise LabelError(f"{text!r} is not a label", Xserr.BAD_LABEL_FORMAT)
    s = text.strip()
    rec = _RECORD_FORM.match(s)
    if rec:
        if rec.group(1).upper() not in _SHYPE_TYPES:
            raise LabelError(
                f"{text!r}: policy type {rec.group(1)!r} is not supported (only POLICY_SHYPE, "
                "the sHype/ACM policy)",
                Xserr.WRONG_POLICY_TYPE,
            )
        inner = rec.group(3).strip()
        if inner.count(":") != 1:
            raise LabelError(
                f'{text!r}: the record form is (POLICY_SHYPE, "<policy>:<label>")',
                Xserr.BAD_LABEL_FORMAT,
            )
        pol, name = inner.split(":")
        return _checked(pol.strip(), name.strip(), ACM_POLICY_ID, text)
    parts = s.split(":")
    if len(parts) == 4 and parts[0].lower() == "shype" and parts[1].lower() in _SHYPE_KINDS:
        return _checked(parts[2], parts[3], ACM_POLICY_ID, text)
    if "=" in s:
        fields = dict(part.split("=", 1) for part in s.split(",") if "=" in part)
        pol, name = fields.get("policy", "").strip(), fields.get("label", "").strip()
        if not name:
            raise LabelError(
                f"{text!r}: the config form needs label=<label> (and policy=<policy>)",
                Xserr.BAD_LABEL_FORMAT,
            )
        kind = fields.get("policytype", ACM_POLICY_ID).strip() or ACM_POLICY_ID
        return _checked(pol or default_policy, name, kind, text)
    if len(parts) == 3:
        return _checked(parts[1], parts[2], parts[0], text)
    if len(parts) == 2:
        return _checked(parts[0], parts[1], ACM_POLICY_ID, text)
    if len(parts) == 1:
        return _checked(default_policy, parts[0], ACM_POLICY_ID, text)
    raise LabelError(
        f"{text!r} is not a label: expected ACM:<policy>:<label>, sHype:vm|res:<policy>:"
        "<label> or (POLICY_SHYPE, \"<policy>:<label>\") (names contain no ':')",
        Xserr.BAD_LABEL_FORMAT,
    )


def _checked(policy: str | None, name: str, kind: str, text: str) -> Label:
    if not policy:
        raise LabelError(
            f"{text!r} names no policy: write ACM:<policy>:<label>", Xserr.BAD_LABEL_FORMAT
        )
    if not name:
        raise LabelError(f"{text!r} names no label", Xserr.BAD_LABEL_FORMAT)
    if kind not in (ACM_POLICY_ID, INVALID_POLICY_PREFIX + ACM_POLICY_ID):
        raise LabelError(
            f"{text!r}: policy type {kind!r} is not supported (only {ACM_POLICY_ID})",
            Xserr.WRONG_POLICY_TYPE,
        )
    return Label(policy, name, kind)
