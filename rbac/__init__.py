"""rbac — NIST role-based access control, independent of what is being protected.

Core RBAC (users, roles, operations, objects, UA, PA, sessions, CheckAccess), general role
hierarchies, static and dynamic separation of duty, review functions and a compiled decision
index, plus loading of the UA/PA XML files root edits.  Operations and objects are opaque:
operations come from the caller's catalogue (id -> name), objects are names with optional
string attributes (``label``, ``owner``).  Nothing here knows about VMs beyond the words of the
XML vocabulary (ManageVM, VM).

Loading (fails closed: any problem raises PolicyError naming file:line, all problems at once)::

    pol = rbac.load(ua_path, pa_path, operations, owner_uid=0)   # trusted files only
    pol = rbac.loads(ua_bytes, pa_bytes, operations, ua_name="ua.xml", pa_name="pa.xml")
    pol = rbac.PolicyBuilder(operations).add_role("r").grant("r", [6], rbac.Glob("web-*"))
              .assign("alice", "r").build()

Deciding (never raises; a denial says why)::

    d = pol.decide(user, op_id, obj, attrs=None, now=None)   # Decision; bool(d) == d.allowed
    d.role, d.rule, d.reason, d.requires_auth, d.via
    pol.explain(user, op_id, obj, attrs=None, now=None)      # str(), .lines(), .as_dict()
    pol.filter_visible(user, op_id, [(name, attrs), ...])    # names allowed

Sessions (dynamic separation of duty)::

    s = pol.create_session(user, active_roles=None)          # DsdViolation if they conflict
    s.add_active_role(r); s.drop_active_role(r); s.check_access(op_id, obj, attrs=None)

Review: ``users``, ``roles``, ``assigned_roles``, ``assigned_users``, ``authorized_roles``,
``authorized_users``, ``role_permissions``, ``user_permissions``, ``authorized_users_for``,
``user_operations_on_object`` (alias ``operations_of``), ``role_operations_on_object``,
``assignments``, ``inherited_roles``, ``inheritance_path``, ``ssd_sets``, ``dsd_sets``,
``digest``.  Questions about the present take ``now`` like decide().

File formats: etc/examples/README.md; schemas: rbac/schemas/ua.xsd and pa.xsd.

Modules, each importing only modules listed before it (no cycles: see
tests/rbac/test_no_import_cycles.py):
``errors``, ``decision``, ``selectors``, ``hierarchy``, ``timeutil``, ``trusted_file``,
``xmlsafe`` (vocabulary and helpers); ``model`` (the policy as data); ``session``, ``explain``,
``review`` (what the engine hands out or mixes in); ``engine`` (the compiled policy,
:class:`RbacPolicy`); ``builder`` (:class:`PolicyBuilder`: validate, then build an engine);
``loader`` (the UA/PA files into a builder).
"""

from .builder import PolicyBuilder
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
from .model import Assignment, Permission, SeparationSet
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
