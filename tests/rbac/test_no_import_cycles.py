"""The module import graphs of ``rbac`` and ``policy`` have no cycles, and neither package
imports the other or ``secured_virt``.

Why a test: a cycle is easy to bring back (a convenience method that calls "up", a type hint
under TYPE_CHECKING, an import moved into a function to make the error go away), and once one
is there the layering the layout shows is no longer true.  So every import counts here: at the
top, inside functions, under ``if TYPE_CHECKING:``.  The graph is read with ``ast``, without
importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("rbac", "policy")
#: what each package must not import (docs/architecture.md)
FORBIDDEN = {"rbac": ("policy", "secured_virt"), "policy": ("rbac", "secured_virt")}

Edge = tuple[str, str, int]  # (importing module, imported module, line)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_submodule(root: Path, package: str, name: str) -> bool:
    """Does ``from <package> import <name>`` name a module (source, package or extension)?"""
    d = root.joinpath(*package.split("."))
    return (
        (d / f"{name}.py").is_file()
        or (d / name / "__init__.py").is_file()
        or (d / f"{name}.c").is_file()
        or any(d.glob(f"{name}.*.so"))
    )


def imports(root: Path, package: str) -> tuple[dict[str, Path], list[Edge]]:
    """Every module of ``package`` below ``root`` and every import any of them makes.

    ``from . import x`` is an edge to the submodule ``x`` when there is one, else to the
    package; ``from .a import b`` likewise to ``a.b`` or ``a``.
    """
    modules = {
        _module_name(root, p): p for p in sorted((root / package).rglob("*.py")) if p.is_file()
    }
    edges: list[Edge] = []
    for mod, path in modules.items():
        here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges += [(mod, a.name, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                for a in node.names:
                    target = f"{src}.{a.name}" if _is_submodule(root, src, a.name) else src
                    edges.append((mod, target, node.lineno))
    return modules, edges


def find_cycle(modules: dict[str, Path], edges: list[Edge]) -> list[Edge] | None:
    """One import cycle among ``modules`` as the edges that close it, or None."""
    graph: dict[str, list[Edge]] = {m: [] for m in modules}
    for e in edges:
        if e[1] in modules and e[1] != e[0]:
            graph[e[0]].append(e)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[Edge] = []

    def visit(mod: str) -> list[Edge] | None:
        state[mod] = 1
        for e in graph[mod]:
            if state.get(e[1]) == 1:
                start = next(i for i, p in enumerate(path) if p[0] == e[1]) if path else 0
                return [*path[start:], e]
            if e[1] not in state:
                path.append(e)
                found = visit(e[1])
                if found:
                    return found
                path.pop()
        state[mod] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def _describe(root: Path, modules: dict[str, Path], cycle: list[Edge]) -> str:
    steps = "\n".join(
        f"  {modules[a].relative_to(root)}:{line}: {a} imports {b}" for a, b, line in cycle
    )
    return (
        f"import cycle:\n{steps}\n"
        "Break it by moving what both sides need into a lower module (or passing it in); "
        "an import inside a function or under TYPE_CHECKING still counts."
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    modules, edges = imports(REPO, package)
    assert len(modules) > 5, f"found only {sorted(modules)} below {REPO / package}"
    cycle = find_cycle(modules, edges)
    assert cycle is None, _describe(REPO, modules, cycle)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_of_the_other_layers(package):
    modules, edges = imports(REPO, package)
    bad = [
        f"{modules[a].relative_to(REPO)}:{line}: imports {b}"
        for a, b, line in edges
        if b.split(".")[0] in FORBIDDEN[package]
    ]
    assert not bad, (
        f"{package} must not import {' or '.join(FORBIDDEN[package])} "
        "(secured_virt composes rbac and policy):\n  " + "\n  ".join(bad)
    )


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_checker_sees_hidden_and_indirect_cycles(tmp_path):
    """The checker itself: a cycle through a function-level import, one through a
    TYPE_CHECKING import, and one of three modules are each found; ``from . import x`` of a
    submodule is not mistaken for an import of the package."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\nfrom .low import LOW\n",
            "pkg/low.py": "LOW = 1\n",
            "pkg/a.py": "from . import low\nA = low.LOW\n",
            "pkg/fn/__init__.py": "",
            "pkg/fn/x.py": "from .y import Y\nX = 1\n",
            "pkg/fn/y.py": "Y = 1\ndef f():\n    from .x import X\n    return X\n",
            "pkg/tc/__init__.py": "",
            "pkg/tc/x.py": "from .y import Y\n",
            "pkg/tc/y.py": "from typing import TYPE_CHECKING\nY = 1\n"
            "if TYPE_CHECKING:\n    from . import x\n",
            "pkg/three/__init__.py": "",
            "pkg/three/a.py": "from ..three import b\n",
            "pkg/three/b.py": "import pkg.three.c\n",
            "pkg/three/c.py": "from pkg.three.a import *\n",
        },
    )
    modules, edges = imports(tmp_path, "pkg")
    found = set()
    for sub in ("fn", "tc", "three"):
        mods = {m: p for m, p in modules.items() if m.startswith(f"pkg.{sub}.")}
        cycle = find_cycle(mods, edges)
        assert cycle is not None, f"no cycle found in pkg/{sub}"
        found.add(sub)
        assert cycle[0][0] == cycle[-1][1], cycle
        assert "import cycle:" in _describe(tmp_path, modules, cycle)
    assert found == {"fn", "tc", "three"}
    sub_free = {m: p for m, p in modules.items() if m.count(".") <= 1}
    assert find_cycle(sub_free, edges) is None  # pkg -> a -> low, not a -> pkg
    assert ("pkg.a", "pkg.low", 1) in edges
