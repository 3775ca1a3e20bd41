"""rbac — NIST role-based access control, independent of what is being protected.

Core RBAC (users, roles, operations, objects, UA, PA, sessions, CheckAccess), general role
hierarchies, static and dynamic separation of duty, review functions, and a compiled decision
index; plus loading of the UA/PA XML files that root edits.  Operations and objects are opaque:
operations come from the caller's catalogue (id -> name), objects are names with optional
attributes (``label``, ``owner``).

    import rbac
    pol = rbac.load("/etc/secured-virt/ua.xml", "/etc/secured-virt/pa.xml", {6: "start", ...})
    d = pol.decide("alice", 6, "vm1")
    if not d: print(d.reason)

See docs in etc/examples/README.md for the file formats.
"""

from .decision import Decision
from .engine import RbacPolicy
from .errors import (
    DsdViolation,
    PolicyError,
    RbacError,
    SessionError,
    UnknownName,
    UntrustedFileError,
)
from .explain import Explanation
from .loader import load, loads, policy_digest
from .model import Assignment, Permission, PolicyBuilder, SeparationSet
from .selectors import AnyObject, Attribute, Exact, Glob, Owned, Selector
from .session import Session
from .trusted_file import read_trusted
from .xmlsafe import MAX_POLICY_BYTES

__all__ = [
    "MAX_POLICY_BYTES",
    "AnyObject",
    "Assignment",
    "Attribute",
    "Decision",
    "DsdViolation",
    "Exact",
    "Explanation",
    "Glob",
    "Owned",
    "Permission",
    "PolicyBuilder",
    "PolicyError",
    "RbacError",
    "RbacPolicy",
    "Selector",
    "SeparationSet",
    "Session",
    "SessionError",
    "UnknownName",
    "UntrustedFileError",
    "load",
    "loads",
    "policy_digest",
    "read_trusted",
]
