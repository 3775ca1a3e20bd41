"""rbac's partitions on their own (no realms): what the C index answers and what it hands back.

tests/tenancy/test_realm_index.py holds decide_in() to the realm step + decide() on random
realms; here, the generic edges: a partition beyond the 63 the masks number, operation ids
beyond the 128 a restriction's mask holds, attributes of other types, long and non-Latin-1
user names (kept by reference), the table starting afresh past its bound, bad arguments.
"""

from __future__ import annotations

import gc
import time
import types

import pytest

import rbac
from rbac import engine

pytestmark = pytest.mark.skipif(
    engine._native is None, reason="rbac._native not built (no C compiler)"
)

CATALOGUE = {0: "zero", 1: "one", 127: "top", 128: "beyond"}


def policy(native=True):
    b = rbac.PolicyBuilder(CATALOGUE)
    b.add_role("r")
    b.grant("r", [0, 1, 127, 128], rbac.AnyObject())
    for u in ("u", "a-user-with-a-long-name", "用户"):
        b.add_user(u)
        b.assign(u, "r")
    return rbac.RbacPolicy(b.model(), native=native)


def later() -> float:
    return time.monotonic() + 600


def test_the_check_and_the_decision():
    pol = policy()
    parts = engine.Partitions("zone", {"z1": frozenset({0, 1}), "z2": frozenset({128})})
    for u in ("u", "a-user-with-a-long-name", "用户"):
        parts.tell(u, frozenset({"z1", "z3"}), later())
        d = pol.decide_in(parts, u, 0, "x", {"zone": "z1"})
        assert d is not None and tuple(d) == tuple(pol.decide(u, 0, "x", {"zone": "z1"}))
        assert pol.decide_in(parts, u, 127, "x", {"zone": "z1"}) is None  # not allowed there
        assert pol.decide_in(parts, u, 127, "x", {"zone": "z3"}) is not None  # unrestricted
        assert pol.decide_in(parts, u, 0, "x", {"zone": "z2"}) is None  # not theirs
        assert pol.decide_in(parts, u, 0, "x", None) is None  # in no zone: not for them
        assert pol.decide_in(parts, u, 0, "x", {"zone": 1}) is None  # not a str
        assert pol.decide_in(parts, u, 0, "x", types.MappingProxyType({"zone": "z1"})) is None
    parts.tell("u", frozenset(), later())
    assert pol.decide_in(parts, "u", 0, "x", None) is not None  # both in none
    assert pol.decide_in(parts, "u", 0, "x", {"zone": ""}) is not None
    assert pol.decide_in(parts, "u", 0, "x", {"zone": "z1"}) is None
    parts.tell("u", frozenset({"z2"}), later())
    assert pol.decide_in(parts, "u", 128, "x", {"zone": "z2"}) is None  # id beyond the mask
    parts.tell("u", frozenset({"z1"}), time.monotonic() - 1)  # already expired
    assert pol.decide_in(parts, "u", 0, "x", {"zone": "z1"}) is None
    parts.tell("u", frozenset({"z1"}), later())
    parts.forget()
    assert parts.known() == 0 and pol.decide_in(parts, "u", 0, "x", {"zone": "z1"}) is None


def test_partitions_beyond_the_masks_are_handed_back():
    pol = policy()
    parts = engine.Partitions("zone", {})
    names = [f"p{i}" for i in range(70)]
    parts.tell("u", frozenset(names), later())
    answered = [p for p in names if pol.decide_in(parts, "u", 0, "x", {"zone": p}) is not None]
    assert 0 < len(answered) == 63  # the others: Python's own check answers them
    parts.tell("a-user-with-a-long-name", frozenset(names[65:]), later())  # unnumbered only
    # in partitions the masks do not number, so not "in none"
    assert pol.decide_in(parts, "a-user-with-a-long-name", 0, "x", None) is None


def test_bounded_table_and_references():
    pol = policy()
    parts = engine.Partitions("zone", {})
    until = later()
    for i in range(70000):  # past the bound: the table starts afresh, later users told again
        parts.tell(f"user-with-a-long-name-{i}", frozenset({"z"}), until)
    assert parts.known() < 70000
    parts.tell("用户", frozenset({"z"}), until)
    gc.collect()
    assert pol.decide_in(parts, "用户", 0, "x", {"zone": "z"}) is not None
    del parts
    gc.collect()


def test_bad_arguments_are_refused_and_python_answers_without_c():
    with pytest.raises(TypeError):
        engine.Partitions("zone", {"z": {0}})  # not a frozenset
    with pytest.raises(TypeError):
        engine.Partitions(1, {})
    parts = engine.Partitions("zone", {})
    with pytest.raises(TypeError):
        parts.tell("u", {"z"}, later())
    with pytest.raises(TypeError):
        policy().decide_in(object(), "u", 0, "x", None)
    parts.tell("u", frozenset({"z"}), later())
    py = policy(native=False)
    assert py.decide_in(parts, "u", 0, "x", {"zone": "z"}) is None
    assert py.partitioned(parts)("u", 0, "x", {"zone": "z"}) is None
    assert policy().partitioned(parts)("u", 0, "x", {"zone": "z"}).allowed
    assert policy().partitioned(parts, None)("v", 0, "x", {"zone": "z"}) is None
