"""Role inheritance: cycle detection and the closure of each role with its inheritance paths.

General hierarchical RBAC (NIST §5.2): a senior role inherits every permission of its juniors,
transitively, with multiple inheritance allowed.  The relation must be a partial order, so a
cycle is a load error that spells the cycle out ("role inheritance cycle: a -> b -> a").

For explanations every effective role carries the path that made it effective, e.g.
``("Senior", "Middle", "Junior")``: the shortest one, ties broken by role name, so the same
policy always explains itself the same way.
"""

from __future__ import annotations

from collections.abc import Mapping


def find_cycles(juniors: Mapping[str, tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Every elementary cycle found by a depth-first walk, each as (a, b, ..., a)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(juniors, white)
    cycles: list[tuple[str, ...]] = []
    seen: set[frozenset[str]] = set()
    for start in sorted(juniors):
        if colour[start] != white:
            continue
        # iterative DFS: stack of (node, iterator over its juniors); path mirrors the stack
        path = [start]
        colour[start] = grey
        stack = [iter(sorted(juniors.get(start, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                colour[path.pop()] = black
                continue
            c = colour.get(nxt, black)  # undefined juniors are reported elsewhere
            if c == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(sorted(juniors.get(nxt, ()))))
            elif c == grey:
                cyc = (*path[path.index(nxt) :], nxt)
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    cycles.append(cyc)
    return cycles


def closures(juniors: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, tuple[int, str]]]:
    """For each role, {effective role: (distance, next hop)}; the role itself is (0, "").

    ``next hop`` is the immediate junior through which the effective role is reached; follow
    the hops with :func:`path` to spell out the inheritance path.  Only hops are stored so a
    deep hierarchy costs O(roles x effective roles), not that times the depth.  Among shortest
    paths the lexicographically smallest is chosen.  Requires an acyclic relation (check with
    :func:`find_cycles` first); raises ValueError on a cycle.
    """
    memo: dict[str, dict[str, tuple[int, str]]] = {}

    def combine(r: str) -> None:
        result: dict[str, tuple[int, str]] = {r: (0, "")}
        for j in sorted(juniors.get(r, ())):
            for k, (dist, _hop) in memo[j].items():
                cand = (dist + 1, j)
                old = result.get(k)
                if old is None or cand < old:
                    result[k] = cand
        memo[r] = result

    for root in juniors:
        if root in memo:
            continue
        # iterative post-order walk (hierarchies may be deeper than the recursion limit)
        on_path = {root}
        stack = [(root, iter(juniors.get(root, ())))]
        while stack:
            r, it = stack[-1]
            j = next(it, None)
            if j is None:
                stack.pop()
                on_path.discard(r)
                combine(r)
            elif j not in memo:
                if j in on_path:
                    raise ValueError("role hierarchy has a cycle")
                on_path.add(j)
                stack.append((j, iter(juniors.get(j, ()))))
    return memo


def path(closure: Mapping[str, Mapping[str, tuple[int, str]]], start: str, end: str):
    """The inheritance path (start, ..., end) recorded by :func:`closures`."""
    out = [start]
    cur = start
    while cur != end:
        cur = closure[cur][end][1]
        out.append(cur)
    return tuple(out)
