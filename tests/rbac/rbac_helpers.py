"""Helpers for the rbac tests: the test catalogue and small UA/PA document builders."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "etc" / "examples"

#: the catalogue the rbac tests use: ids 1-63 like the front-end's, a few with real names
OPS = {i: f"op{i}" for i in range(1, 64)}
OPS.update({2: "list", 3: "dominfo", 4: "domstate", 6: "start", 10: "shutdown", 13: "destroy"})
OPS[16] = "policy-show"


def ua_doc(body: str) -> bytes:
    return f'<?xml version="1.0"?>\n<UserConfiguration>\n{body}\n</UserConfiguration>\n'.encode()


def pa_doc(body: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<RolePolicyDefinition>\n{body}\n</RolePolicyDefinition>\n'.encode()
    )


def role(name: str, vms=("vm1",), ops=(6,), *, kind="individual", attrs="", extra="") -> str:
    """A <Role> granting ``ops`` on ``vms`` (seed shape), with optional raw ``extra`` inside."""
    if kind == "individual":
        scope = "".join(f'<VM name="{v}"/>' for v in vms)
    elif kind == "pattern":
        scope = "".join(f'<VM pattern="{v}"/>' for v in vms)
    elif kind == "label":
        scope = "".join(f'<Label name="{v}"/>' for v in vms)
    else:
        scope = ""
    accept = "".join(
        f'<operation id="{o}"/>' if isinstance(o, int) else f'<operation name="{o}"/>' for o in ops
    )
    grant = (
        f'<ManageVM type="{kind}">{scope}</ManageVM>'
        f"<ControlOperation><Accept>{accept}</Accept></ControlOperation>"
        if ops
        else ""
    )
    return f'<Role name="{name}"{attrs}>{extra}{grant}</Role>'


def user(name: str, *roles: str, expires: dict | None = None) -> str:
    expires = expires or {}
    inner = "".join(
        f'<UserRole role="{r}"' + (f' expires="{expires[r]}"' if r in expires else "") + "/>"
        for r in roles
    )
    return f'<User name="{name}">{inner}</User>'


def compile_policy(ua_body: str, pa_body: str, ops=None):
    """rbac.loads() of UA/PA bodies wrapped in their root elements."""
    import rbac

    return rbac.loads(ua_doc(ua_body), pa_doc(pa_body), OPS if ops is None else ops)


def errors_of(exc) -> list[str]:
    """Every individual message (as 'file:line: text') of a PolicyError."""
    return [str(e) for e in exc.errors]
