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

from .errors import (
    DsdViolation,
    PolicyError,
    RbacError,
    SessionError,
    UnknownName,
    UntrustedFileError,
)

#: the rest of the API, imported at its first use (PEP 562): a program that needs only
#: ``rbac.errors`` or ``rbac.trusted_file`` (the config reader, svirsh's direct mode as
#: root, which decides nothing through UA/PA) does not pay ~20 ms for lxml, XSD and the engine
_LAZY = {
    "PolicyBuilder": "builder",
    "Decision": "decision",
    "RbacPolicy": "engine",
    "Explanation": "explain",
    "load": "loader",
    "loads": "loader",
    "policy_digest": "loader",
    "Assignment": "model",
    "Permission": "model",
    "SeparationSet": "model",
    "AnyObject": "selectors",
    "Attribute": "selectors",
    "Exact": "selectors",
    "Glob": "selectors",
    "Owned": "selectors",
    "Selector": "selectors",
    "Session": "session",
    "read_trusted": "trusted_file",
    "MAX_POLICY_BYTES": "xmlsafe",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rbac' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
