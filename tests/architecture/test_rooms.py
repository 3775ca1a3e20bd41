"""secured_virt's rooms keep to their rules (docs/architecture.md): no import cycle between
modules, and each room imports only the rooms its ``__init__`` docstring allows.

Why a test: the layout is only worth having while it is true.  A convenience import "up" (a
backend importing the service, the gate importing a backend) would compile and pass every
other test, and the next contributor would read a map that no longer matches the code.  Every
import counts, at the top, inside functions and under TYPE_CHECKING; the graph is read with
``ast`` by the checker that guards ``rbac`` and ``policy`` (tests/rbac/test_no_import_cycles.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "import_graph", REPO / "tests" / "rbac" / "test_no_import_cycles.py"
)
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)

#: the shared top-level modules every room may use (they import no room but access's leaf
#: catalogue: config validates operation names).  groupcommit: the leader/waiters batching
#: that access.audit (one fdatasync per batch) and shype.categories (one flock and save per
#: batch) share; it imports nothing.  waiting: how a thread waiting for a listing others share
#: tells svirtd's admission queue (daemon/admission.py) that it needs no turn meanwhile
SHARED = {
    "fsutil",
    "requests",
    "hardening",
    "config",
    "sizes",
    "groupcommit",
    "lazylog",
    "waiting",
}

#: room -> the rooms (and outside packages of ours) it may import.  Front-ends sit on top,
#: the service below them, then sHype and confinement, access and role files, backends.
ALLOWED = {
    "access": {"rbac", "rolefiles"},  # the gate reads the loaded role files (rolefiles.store)
    "rolefiles": {"rbac", "access"},  # the operation catalogue only: see test below
    "confinement": set(),
    "tenancy": {"rbac"},  # realms: NSS groups and the policy builder; the service hands it VMs
    "backends": set(),
    "shype": {"policy", "backends", "confinement"},
    "service": {
        "rbac",
        "policy",
        "access",
        "rolefiles",
        "confinement",
        "shype",
        "backends",
        "tenancy",
    },
    "cli": {
        "rbac",
        "policy",
        "access",
        "rolefiles",
        "confinement",
        "shype",
        "backends",
        "service",
        "tenancy",
    },
    "daemon": {"access", "service"},
    # what both network front-ends share: the svirtd link (client), TLS, listener, start-up
    "netfront": set(),
    # unprivileged: reaches svirtd through netfront's link, Xen's XSERR table from policy
    "xenapi": {"policy", "netfront"},
    # unprivileged too: svirtd through netfront's link, the catalogue's names
    "web": {"netfront", "access"},
    "testing": {"access"},
}
#: top-level modules that are front-end helpers, usable by front-ends only
FRONT_HELPERS = {"client", "console", "demo"}
FRONTENDS = {"cli", "daemon", "netfront", "xenapi", "web"}


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("rbac", "policy"):
        return parts[0]
    if parts[0] != "secured_virt" or len(parts) == 1:
        return None
    if (REPO / "secured_virt" / parts[1]).is_dir():
        return parts[1]
    return "top:" + parts[1]


@pytest.fixture(scope="module")
def edges():
    modules, edges = graph.imports(REPO, "secured_virt")
    assert len(modules) > 40, f"found only {len(modules)} modules below {REPO / 'secured_virt'}"
    return modules, edges


def test_no_import_cycle_in_secured_virt(edges):
    modules, found = edges
    cycle = graph.find_cycle(modules, found)
    assert cycle is None, graph._describe(REPO, modules, cycle)


def test_every_room_is_declared():
    rooms = {
        p.name
        for p in (REPO / "secured_virt").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file()
    }
    assert rooms == set(ALLOWED), (
        "a new room needs its line in ALLOWED here and in docs/architecture.md: "
        f"{sorted(rooms ^ set(ALLOWED))}"
    )
    for room in rooms:
        doc = (REPO / "secured_virt" / room / "__init__.py").read_text()
        assert doc.lstrip().startswith('"""'), f"secured_virt/{room}/__init__.py has no docstring"


def violations(modules: dict, found) -> list[str]:
    """Every import in ``found`` that crosses rooms against the rules above."""
    bad = []
    for a, b, line in found:
        ra, rb = _room(a), _room(b)
        if ra is None or rb is None or ra == rb:
            continue
        if ra.startswith("top:"):
            top = ra[4:]
            ok = rb in ("rbac", "top:requests", "top:fsutil") or (
                top in FRONT_HELPERS | {"config"} and rb in ("access", "top:requests")
            )
        elif rb.startswith("top:"):
            ok = rb[4:] in SHARED or (ra in FRONTENDS and rb[4:] in FRONT_HELPERS)
        else:
            ok = rb in ALLOWED[ra]
        if not ok:
            bad.append(f"{modules[a]}:{line}: {a} imports {b}")
    return bad


def test_rooms_import_only_what_they_may(edges):
    modules, found = edges
    bad = violations(modules, found)
    assert not bad, "imports that break the rooms (docs/architecture.md):\n  " + "\n  ".join(bad)


def test_role_files_take_only_the_catalogue_from_access(edges):
    """access and rolefiles import each other's leaves only: the gate reads the loaded role
    files (rolefiles.store), the role-file tools name operations (access.operations), and
    neither leaf imports back — so no module cycle can form through them."""
    _modules, found = edges
    cross = {(a, b) for a, b, _ in found if _room(a) == "rolefiles" and _room(b) == "access"}
    assert {b for _, b in cross} <= {"secured_virt.access.operations"}, sorted(cross)
    cross = {(a, b) for a, b, _ in found if _room(a) == "access" and _room(b) == "rolefiles"}
    assert {b for _, b in cross} <= {"secured_virt.rolefiles.store"}, sorted(cross)
    leaf = [b for a, b, _ in found if a == "secured_virt.access.operations" and "secured_virt" in b]
    assert not leaf, leaf


def test_the_client_path_imports_no_hypervisor_code(edges):
    """svirsh talking to svirtd must start fast: the client and the catalogue import neither
    libvirt nor lxml nor rbac/policy, at any depth."""
    modules, found = edges
    start = {"secured_virt.client", "secured_virt.access.operations", "secured_virt.requests"}
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [b for a, b, _ in found if a == m and b in modules]
    heavy = {
        (a, b)
        for a, b, _ in found
        if a in seen and b.split(".")[0] in ("libvirt", "lxml", "rbac", "policy")
    }
    assert not heavy, sorted(heavy)


def test_the_checker_catches_forbidden_imports():
    """The rules can fail: a backend importing the service, the gate importing a backend, the
    client importing the service and shype importing a front-end are each flagged; the
    allowed direction is not."""
    modules = {
        m: m.replace(".", "/") + ".py"
        for m in (
            "secured_virt.backends.base",
            "secured_virt.access.gate",
            "secured_virt.client",
            "secured_virt.shype.enforcer",
            "secured_virt.service.facade",
        )
    }
    wrong = [
        ("secured_virt.backends.base", "secured_virt.service.facade", 1),
        ("secured_virt.access.gate", "secured_virt.backends.factory", 2),
        ("secured_virt.client", "secured_virt.service", 3),
        ("secured_virt.shype.enforcer", "secured_virt.cli.admin", 4),
    ]
    assert len(violations(modules, wrong)) == len(wrong)
    right = [("secured_virt.service.facade", "secured_virt.backends.base", 5)]
    assert violations(modules, right) == []
