"""Label strings: ``ACM:<policy>:<label>``, and the (policy name, label name) pair behind them.

Why names and not ssidrefs (seed 001): an ssidref is a local index that changes with every
policy compilation and differs between hosts; the pair (policy name, label name) means the same
thing everywhere, and is translated to the local ssidref only when a domain is instantiated.
"""

from __future__ import annotations

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


def parse_label(text: str | Label, default_policy: str | None = None) -> Label:
    """Read a label in any of the forms Xen's tools used.

    ``ACM:<policy>:<label>``, ``INV_ACM:<policy>:<label>``, ``<policy>:<label>``, the VM
    config form ``policy=<policy>,label=<label>``, or a bare ``<label>`` (which needs
    ``default_policy``, normally the active policy).  Raises LabelError (BAD_LABEL_FORMAT).
    """
    if isinstance(text, Label):
        return text
    if not isinstance(text, str) or not text.strip():
        raise LabelError(f"{text!r} is not a label", Xserr.BAD_LABEL_FORMAT)
    s = text.strip()
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
    parts = s.split(":")
    if len(parts) == 3:
        return _checked(parts[1], parts[2], parts[0], text)
    if len(parts) == 2:
        return _checked(parts[0], parts[1], ACM_POLICY_ID, text)
    if len(parts) == 1:
        return _checked(default_policy, parts[0], ACM_POLICY_ID, text)
    raise LabelError(
        f"{text!r} is not a label: expected ACM:<policy>:<label> (names contain no ':')",
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
