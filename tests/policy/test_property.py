"""Property: under any sequence of starts, stops, relabels and policy updates, the Chinese Wall
holds (no two running domains hold different types of one conflict set) and the hooks' counts
always equal a recount from scratch; a refused operation changes nothing."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policy
from policy import (
    AcmPolicy,
    ConflictSet,
    FromPolicy,
    MediationDenied,
    Mediator,
    PolicyFileError,
    PolicyHeader,
    PolicyUpdateRefused,
    VmLabel,
)

TYPES = [f"t{i}" for i in range(6)]
SM = "SystemManagement"
DOMS = [f"d{i}" for i in range(6)]


def _fits(cw: set[str], sets: list[ConflictSet]) -> bool:
    return all(len(cw.intersection(cs.types)) <= 1 for cs in sets)


@st.composite
def conflict_sets(draw):
    n = draw(st.integers(0, 3))
    return [
        ConflictSet(
            f"S{i}",
            tuple(draw(st.lists(st.sampled_from(TYPES), min_size=2, max_size=4, unique=True))),
        )
        for i in range(n)
    ]


@st.composite
def vm_labels(draw, sets, names):
    labels = []
    for name in names:
        cw = set(draw(st.lists(st.sampled_from(TYPES), max_size=3, unique=True)))
        for cs in sets:  # drop types until the label holds at most one type per set
            extra = sorted(cw.intersection(cs.types))[1:]
            cw.difference_update(extra)
        ste = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True))
        labels.append(VmLabel(name, tuple(ste), tuple(sorted(cw))))
    return labels


def _policy(version, sets, labels, from_policy=None) -> AcmPolicy:
    dom0 = VmLabel(SM, (SM, *TYPES), (SM,))
    return AcmPolicy.from_parts(
        PolicyHeader("prop", version, from_policy=from_policy),
        ste_types=[SM, *TYPES],
        chwall_types=[SM, *TYPES],
        conflict_sets=sets,
        vm_labels=[dom0, *labels],
        bootstrap=SM,
    )


def _recount(p: AcmPolicy, running) -> dict:
    """From the definitions alone: who holds which type, and who conflicts with which type."""
    types_of = {lbl.name: set(lbl.chwall_types) for lbl in p.vm_labels}
    rt, agg = Counter(), Counter()
    for d in running.values():
        own = types_of.get(d.label, set())
        rt.update(own)
        for cs in p.conflict_sets:
            if own.intersection(cs.types):
                agg.update(t for t in cs.types if t not in own)
    return {"running_types": dict(+rt), "conflict_aggregate": dict(+agg)}


def _check_invariants(m: Mediator) -> None:
    p = m.compiled.policy
    running = m.running()
    assert m.chwall_state() == _recount(p, running)
    types_of = {lbl.name: set(lbl.chwall_types) for lbl in p.vm_labels}
    for cs in p.conflict_sets:
        holders = {}
        for key, d in running.items():
            for t in types_of.get(d.label, set()).intersection(cs.types):
                holders.setdefault(t, set()).add(key)
        assert len(holders) <= 1, f"conflict set {cs.name}: {holders}"


def _snapshot(m: Mediator):
    return (m.compiled.version, m.running(), m.chwall_state())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_chinese_wall_and_counts_hold_under_any_sequence(data):
    sets = data.draw(conflict_sets())
    names = [f"L{i}" for i in range(data.draw(st.integers(1, 5)))]
    m = Mediator(_policy("1.0", sets, data.draw(vm_labels(sets, names))).compile())
    _check_invariants(m)
    for _step in range(data.draw(st.integers(1, 40))):
        cur = m.compiled.policy
        labels = [lbl.name for lbl in cur.vm_labels] + [None]
        op = data.draw(st.sampled_from(["start", "start", "stop", "relabel", "update"]))
        before = _snapshot(m)
        if op == "start":
            key, label = data.draw(st.sampled_from(DOMS)), data.draw(st.sampled_from(labels))
            verdict = m.check_domain_create(key, label)
            try:
                m.domain_create(key, label)
                assert verdict.allowed
                assert m.running()[key].label == (label or policy.UNLABELED)
            except MediationDenied as e:
                assert not verdict.allowed and e.rule == verdict.rule
                assert _snapshot(m) == before
        elif op == "stop":
            key = data.draw(st.sampled_from(DOMS))
            try:
                m.domain_destroy(key)
                assert key not in m.running()
            except MediationDenied:
                assert _snapshot(m) == before
        elif op == "relabel":
            key, label = data.draw(st.sampled_from(DOMS)), data.draw(st.sampled_from(labels))
            try:
                m.relabel(key, label or policy.UNLABELED)
                assert m.running()[key].label == (label or policy.UNLABELED)
            except MediationDenied:
                assert _snapshot(m) == before
        else:
            new_sets = data.draw(conflict_sets())
            keep = [lbl for lbl in cur.vm_labels if lbl.name != SM]
            kept = data.draw(st.lists(st.sampled_from(keep), unique=True)) if keep else []
            renamed = {lbl.name: lbl.name + "x" for lbl in kept if data.draw(st.booleans())}
            new_names = [renamed.get(lbl.name, lbl.name) for lbl in kept]
            fresh = data.draw(vm_labels(new_sets, new_names))
            new_labels = [
                VmLabel(
                    f.name,
                    f.ste_types,
                    f.chwall_types,
                    from_name=old.name if old.name in renamed else None,
                )
                for f, old in zip(fresh, kept, strict=True)
            ]
            major, minor = cur.version_tuple
            try:
                new = _policy(
                    f"{major}.{minor + 1}", new_sets, new_labels, FromPolicy(cur.name, cur.version)
                ).compile()
            except PolicyFileError:
                continue
            try:
                res = m.update_policy(new)
                assert m.compiled is new
                for key, (old, now) in res.relabeled.items():
                    assert renamed[old] == now == m.running()[key].label
            except PolicyUpdateRefused as e:
                assert e.errors
                assert _snapshot(m) == before
        _check_invariants(m)
