"""Error codes and exceptions of the policy package.

Why: every refusal must reach a human with what was wrong, where, and what to do; and the XSM
API must speak Xen's XSERR numbers so that tooling written against the Xen-API semantics keeps
working.  Codes are ``n + 0x1000`` as in Xen 3.3's ``xsconstants.py`` (Xen's functions returned
them negated; here they are always positive, 0 meaning success).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, NamedTuple

XSERR_BASE = 0x1000


class Xserr(IntEnum):
    """XSERR codes, numbered as xend 3.3 returns them (positive here)."""

    SUCCESS = 0
    GENERAL_FAILURE = XSERR_BASE + 1
    BAD_XML = XSERR_BASE + 2
    XML_PROCESSING = XSERR_BASE + 3
    POLICY_INCONSISTENT = XSERR_BASE + 4
    FILE_ERROR = XSERR_BASE + 5
    BAD_RESOURCE_FORMAT = XSERR_BASE + 6
    BAD_LABEL_FORMAT = XSERR_BASE + 7
    RESOURCE_NOT_LABELED = XSERR_BASE + 8
    RESOURCE_ALREADY_LABELED = XSERR_BASE + 9
    WRONG_POLICY_TYPE = XSERR_BASE + 10
    BOOTPOLICY_INSTALLED = XSERR_BASE + 11
    NO_DEFAULT_BOOT_TITLE = XSERR_BASE + 12
    POLICY_LOAD_FAILED = XSERR_BASE + 13
    POLICY_LOADED = XSERR_BASE + 14
    POLICY_TYPE_UNSUPPORTED = XSERR_BASE + 15
    BAD_CONFLICTSET = XSERR_BASE + 16
    RESOURCE_IN_USE = XSERR_BASE + 17
    BAD_POLICY_NAME = XSERR_BASE + 18
    VERSION_PREVENTS_UPDATE = XSERR_BASE + 19
    BAD_LABEL = XSERR_BASE + 20
    VM_WRONG_STATE = XSERR_BASE + 21
    POLICY_NOT_LOADED = XSERR_BASE + 22
    RESOURCE_ACCESS = XSERR_BASE + 23
    HV_OP_FAILED = XSERR_BASE + 24
    BOOTPOLICY_INSTALL_ERROR = XSERR_BASE + 25
    VM_NOT_AUTHORIZED = XSERR_BASE + 26
    VM_IN_CONFLICT = XSERR_BASE + 27
    POLICY_HAS_DUPLICATES = XSERR_BASE + 28

    @property
    def message(self) -> str:
        return XSERR_MESSAGES[self]


XSERR_LAST = Xserr.POLICY_HAS_DUPLICATES

XSERR_MESSAGES: dict[Xserr, str] = {
    Xserr.SUCCESS: "Success",
    Xserr.GENERAL_FAILURE: "General Failure",
    Xserr.BAD_XML: "XML is malformed or does not match the policy schema",
    Xserr.XML_PROCESSING: "Error while processing the XML policy",
    Xserr.POLICY_INCONSISTENT: "Policy is inconsistent",
    Xserr.FILE_ERROR: "File error",
    Xserr.BAD_RESOURCE_FORMAT: "Bad resource name format",
    Xserr.BAD_LABEL_FORMAT: "Bad label format",
    Xserr.RESOURCE_NOT_LABELED: "Resource is not labeled",
    Xserr.RESOURCE_ALREADY_LABELED: "Resource is already labeled",
    Xserr.WRONG_POLICY_TYPE: "Wrong policy type",
    Xserr.BOOTPOLICY_INSTALLED: "A boot policy is already installed",
    Xserr.NO_DEFAULT_BOOT_TITLE: "No default boot title",
    Xserr.POLICY_LOAD_FAILED: "Loading the policy failed",
    Xserr.POLICY_LOADED: "A policy is loaded; an update needs the LOAD flag",
    Xserr.POLICY_TYPE_UNSUPPORTED: "Policy type is not supported",
    Xserr.BAD_CONFLICTSET: "Bad conflict set",
    Xserr.RESOURCE_IN_USE: "Resource is in use",
    Xserr.BAD_POLICY_NAME: "Bad policy name",
    Xserr.VERSION_PREVENTS_UPDATE: "Policy version prevents the update",
    Xserr.BAD_LABEL: "Bad label",
    Xserr.VM_WRONG_STATE: "VM is in the wrong state",
    Xserr.POLICY_NOT_LOADED: "Policy is not loaded",
    Xserr.RESOURCE_ACCESS: "A VM would lose access to one of its resources",
    Xserr.HV_OP_FAILED: "The (emulated) hypervisor refused the operation",
    Xserr.BOOTPOLICY_INSTALL_ERROR: "Installing the boot policy failed",
    Xserr.VM_NOT_AUTHORIZED: "VM is not authorized to run",
    Xserr.VM_IN_CONFLICT: "VM label conflicts with another VM",
    Xserr.POLICY_HAS_DUPLICATES: "Policy has duplicate types or labels",
}


class PolicyError(Exception):
    """Base class: something about an ACM policy or a decision under it went wrong."""

    xserr: Xserr = Xserr.GENERAL_FAILURE


class Problem(NamedTuple):
    """One finding in a policy file: where (line, 0 if unknown), what, and its XSERR code."""

    line: int
    message: str
    xserr: Xserr


class PolicyFileError(PolicyError):
    """A policy file (or XML text) is unusable.

    ``file``/``line``/``message``/``xserr`` describe the first problem; ``problems`` holds every
    problem found (semantic checks report them all at once so one edit cycle fixes them all).
    ``str()`` is ``file:line: message`` lines, ready to show to an administrator.
    """

    def __init__(
        self,
        file: str,
        line: int,
        message: str,
        xserr: Xserr = Xserr.BAD_XML,
        problems: list[Problem] | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.message = message
        self.xserr = xserr
        self.problems = problems or [Problem(line, message, xserr)]
        super().__init__(str(self))

    @classmethod
    def from_problems(cls, file: str, problems: list[Problem]) -> PolicyFileError:
        first = problems[0]
        return cls(file, first.line, first.message, first.xserr, list(problems))

    def __str__(self) -> str:
        return "\n".join(
            f"{self.file}:{p.line}: {p.message}" if p.line else f"{self.file}: {p.message}"
            for p in self.problems
        )


class LabelError(PolicyError):
    """A label string or name cannot be resolved under the policy it names."""

    def __init__(self, message: str, xserr: Xserr = Xserr.BAD_LABEL) -> None:
        self.xserr = xserr
        self.message = message
        super().__init__(message)


class MediationDenied(PolicyError):
    """The mediation module refused an operation; carries the whole :class:`Verdict`.

    Attributes mirror the verdict: ``hook`` (operation), ``rule`` (which check refused),
    ``reason`` (a sentence for humans), ``details`` (structured facts: conflict set, domains,
    types...), ``xserr`` (the XSERR code xend would report).
    """

    def __init__(self, verdict: Any) -> None:
        self.verdict = verdict
        self.hook: str = verdict.hook
        self.rule: str = verdict.rule
        self.reason: str = verdict.reason
        self.details: Mapping[str, Any] = verdict.details
        self.xserr = Xserr(verdict.code) if verdict.code else Xserr.GENERAL_FAILURE
        super().__init__(verdict.reason)

    def __str__(self) -> str:
        return self.reason


class UpdateError(NamedTuple):
    """One reason a policy change was refused: Xen's (code, detail) pair plus a sentence.

    ``code`` is an ACM hypervisor code (``ACM_SSIDREF_IN_USE`` ... 0x100-0x104) or an XSERR code
    for checks xend did itself; ``detail`` is the number Xen would report (an ssidref, a type
    index, ``domid << 16 | remote domid``...).
    """

    code: int
    detail: int
    message: str

    @property
    def pair(self) -> tuple[int, int]:
        return (self.code, self.detail)


class PolicyUpdateRefused(PolicyError):
    """A policy update or relabel was refused as a whole; nothing changed.

    ``errors`` lists every reason (:class:`UpdateError`); ``pairs`` gives Xen's (code, detail)
    tuples; ``xserr`` is the XSERR code the XSM API reports for it.
    """

    def __init__(
        self,
        errors: list[UpdateError],
        xserr: Xserr = Xserr.HV_OP_FAILED,
        summary: str = "policy change refused",
    ) -> None:
        self.errors = list(errors)
        self.xserr = xserr
        self.summary = summary
        super().__init__(str(self))

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [e.pair for e in self.errors]

    def __str__(self) -> str:
        lines = [f"{self.summary} ({self.xserr.name}); nothing was changed:"]
        lines += [f"  - {e.message}" for e in self.errors]
        return "\n".join(lines)


class XsmError(PolicyError):
    """An XSM management call failed; ``xserr`` is the code, ``message`` says why and what to do."""

    def __init__(self, xserr: Xserr, message: str) -> None:
        self.xserr = xserr
        self.message = message
        super().__init__(f"{message} [{xserr.name}]")
