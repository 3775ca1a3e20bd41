"""The C index (rbac/_native.c) answers exactly what the pure-Python engine answers.

decide() is the C index's method when the extension is built; it answers what it can answer
exactly itself and hands everything else to the Python engine.  These tests hold it to the
Python engine on random policies (every field of every Decision, including the worded rule and
reason), at the edges of its operation masks (operation ids 0, 63 and 64), odd argument
types and keyword calls), and check that it neither leaks nor keeps policies alive.  Group
roles, many roles and every scope kind: test_native_differential.py.
"""

from __future__ import annotations

import gc
import sys
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rbac
from rbac import engine

from .test_property import NOWS, OBJECTS, attr_choices, build, policies

pytestmark = pytest.mark.skipif(
    engine._native is None, reason="rbac._native not built (no C compiler)"
)

#: the property tests' operations 1, 2, 3 mapped onto the edges of the C index's 0..63 masks
EDGE_OPS = {1: 0, 2: 63, 3: 64}
CATALOGUE = {0: "zero", 63: "sixty-three", 64: "sixty-four"}


def build_pair(p):
    """The same random policy compiled twice: with the C index and in pure Python."""
    return [
        build(p, with_sets=False, native=native, catalogue=CATALOGUE, op_map=EDGE_OPS)
        for native in (True, False)
    ]


def same(a: rbac.Decision, b: rbac.Decision) -> None:
    assert type(a) is type(b) is rbac.Decision
    assert tuple(a) == tuple(b)  # allowed, role, rule, reason, requires_auth, via
    assert a.rule == b.rule and a.reason == b.reason


class Sub(str):
    """A str subclass: not what the C index answers, so Python must."""


QUERY_OPS = [0, 63, 64, 1, 200, -1, 2**70, "zero", "sixty-three", "nope", True, False]


@settings(max_examples=150, deadline=None)
@given(p=policies(), data=st.data())
def test_c_index_and_python_decide_identically(p, data):
    fast, slow = build_pair(p)
    assert fast.native and not slow.native
    users = [*p["users"], "nobody", Sub(p["users"][0])]
    objects = [*OBJECTS, "unknown", Sub(OBJECTS[0])]
    for user in users:
        for op in QUERY_OPS:
            for obj in objects:
                attrs = data.draw(st.sampled_from(attr_choices(p["users"])))
                now = data.draw(st.sampled_from([None, *NOWS]))
                same(fast.decide(user, op, obj), slow.decide(user, op, obj))
                same(fast.decide(user, op, obj, attrs, now), slow.decide(user, op, obj, attrs, now))
                same(
                    fast.decide(user, op, obj, now=now, attrs=attrs),
                    slow.decide(user, op, obj, now=now, attrs=attrs),
                )


def small_policy(native=True):
    b = rbac.PolicyBuilder({1: "start", 2: "stop", 170: "far"})
    b.add_role("tenant")
    b.add_role("lead", inherits=["tenant"])
    b.add_role("secure", authenticate=True)
    b.grant("tenant", [1, 2, 170], rbac.Exact(["vm1", "vm2"]))
    b.grant("secure", [1], rbac.Exact(["vm3"]))
    b.add_user("alice")
    b.assign("alice", "lead")
    b.add_user("bob")
    b.assign("bob", "secure")
    return b.build(native=native)


def test_the_extension_is_built_and_used():
    """`make test` installs gcc and python3-dev, so the C index must be there and in use."""
    pol = small_policy()
    assert pol.native
    assert type(pol.decide).__name__ == "builtin_function_or_method"
    stats = pol._native_index().stats()
    assert stats["users"] == 2 and stats["objects"] == 3 and stats["profiles"] == 2
    assert stats["entries"] == 3  # (vm1, tenant), (vm2, tenant), (vm3, secure)


def test_answers_carry_role_path_rule_and_reason():
    pol = small_policy()
    d = pol.decide("alice", 1, "vm1")
    assert d.allowed and d.role == "tenant" and d.via == ("lead", "tenant")
    assert "role tenant accepts operation 1 on" in d.rule
    assert d.reason == "granted by role 'tenant' (inherited: lead -> tenant)"
    d = pol.decide("alice", 2, "vm3")
    assert not d.allowed and d.role is None and d.via == ()
    assert d.reason == "no role of user 'alice' grants operation 2 (stop) on 'vm3'"
    # a role needing authentication, an id beyond the masks; handed to Python: by name
    d = pol.decide("bob", 1, "vm3")
    assert d.allowed and d.requires_auth
    assert pol.decide("alice", 170, "vm2").allowed
    assert pol.decide("alice", "stop", "vm2").allowed
    assert "not in the catalogue" in pol.decide("alice", 5, "vm1").reason
    assert pol.decide("nobody", 1, "vm1").reason == "user 'nobody' unknown"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("alice", 1), {}),
        (("alice", 1, "vm1", None, None, None), {}),
        (("alice", 1, "vm1"), {"bogus": 1}),
        (("alice", 1, "vm1", None), {"attrs": None}),
        (("alice", 1, "vm1", None, None), {"now": None}),
        ((), {"user": "alice", "op_id": 1}),
    ],
)
def test_bad_calls_raise_what_python_raises(args, kwargs):
    fast, slow = small_policy(), small_policy(native=False)
    with pytest.raises(TypeError) as c_err:
        fast.decide(*args, **kwargs)
    with pytest.raises(TypeError) as py_err:
        slow.decide(*args, **kwargs)
    # same complaint; Python names the method it was raised in
    assert str(c_err.value).split("() ", 1)[1] == str(py_err.value).split("() ", 1)[1]


def test_keyword_calls_are_answered():
    pol = small_policy()
    assert pol.decide(user="alice", op_id=1, obj="vm2").allowed
    assert pol.decide("alice", 1, "vm2", attrs={"label": "x"}, now=0).allowed
    assert pol.decide("alice", 1, obj="vm2").allowed


def test_decisions_do_not_leak_references():
    pol = small_policy()
    grant = pol.decide("alice", 1, "vm1")[2]
    user, obj = "alice", "vm1"
    before = (sys.getrefcount(grant), sys.getrefcount(pol), sys.getrefcount(user))
    for _ in range(10000):
        pol.decide(user, 1, obj)
        pol.decide(user, 2, "vm3")
        pol.decide(user, 1, "nowhere")
    assert (sys.getrefcount(grant), sys.getrefcount(pol), sys.getrefcount(user)) == before


def test_a_dropped_policy_is_collected():
    """Policy -> its decide (the index's method) -> index -> policy: a cycle the GC breaks,
    so svirtd's reloads do not pile up old policies."""
    pol = small_policy()
    ref = weakref.ref(pol)
    assert pol.decide("alice", 1, "vm1")
    del pol
    gc.collect()
    assert ref() is None


def test_index_rejects_malformed_input():
    Index = engine._native.Index
    pol = small_policy(native=False)
    ok = dict(fallback=pol._decide, policy=pol, decision=rbac.Decision, known_ops=0)
    member = (0, "r", (), None)
    with pytest.raises(TypeError, match="user names must be str"):
        Index(users={1: 0}, profiles=[((), ())], roles=[], **ok)
    with pytest.raises(ValueError, match="no profile"):
        Index(users={"a": 3}, profiles=[((), ())], roles=[], **ok)
    with pytest.raises(ValueError, match="no role"):
        Index(users={}, profiles=[(((5, "r", (), None),), ())], roles=[], **ok)
    with pytest.raises(TypeError, match="a profile is"):
        Index(users={}, profiles=[((member,),)], roles=[(False, {})], **ok)
    with pytest.raises(TypeError, match="a window is"):
        Index(users={"a": (0, 1, 2)}, profiles=[((), ())], roles=[], **ok)
    with pytest.raises(TypeError, match="a scoped grant is"):
        Index(users={}, profiles=[((), ((1, 0),))], roles=[], **ok)
    bad_glob = (1, engine._K_GLOB, False, "r", ("r",), None, None, 5, None)
    with pytest.raises(TypeError, match="bad selector data"):
        Index(users={}, profiles=[((), (bad_glob,))], roles=[], **ok)
    with pytest.raises(ValueError, match="no selector kind"):
        Index(
            users={},
            profiles=[((), ((1, 99, False, "r", (), None, None, None, None),))],
            roles=[],
            **ok,
        )
    with pytest.raises(ValueError, match="group_any: no profile"):
        Index(users={}, profiles=[], roles=[], group_any=0, **ok)
    with pytest.raises(TypeError, match="object names must be str"):
        Index(users={}, profiles=[], roles=[(False, {b"vm": {}})], **ok)
    with pytest.raises(TypeError, match="needs_auth: bool"):
        Index(users={}, profiles=[], roles=[(1, {})], **ok)
    with pytest.raises(TypeError, match="profile number must be an int"):
        Index(users={"a": 0.0}, profiles=[((), ())], roles=[], **ok)
    with pytest.raises(TypeError, match="grants must be a dict"):
        Index(users={}, profiles=[], roles=[(False, {"vm": [1]})], **ok)
    with pytest.raises(TypeError, match="known_ops must be a non-negative int"):
        Index(users={}, profiles=[], roles=[], **{**ok, "known_ops": -1})
    with pytest.raises(TypeError, match="tuple subclass"):
        Index(pol._decide, pol, dict, {}, [], [], 0)
    with pytest.raises(RuntimeError, match="before it was built"):
        Index.__new__(Index).decide("alice", 1, "vm1")
    with pytest.raises(RuntimeError, match="before it was built"):
        Index.__new__(Index).remember("alice", 0, 1.0)
    half = Index.__new__(Index)
    with pytest.raises(ValueError, match="no profile"):
        half.__init__(users={"a": 3}, profiles=[((), ())], roles=[], **ok)
    with pytest.raises(RuntimeError, match="failed build"):
        half.decide("a", 1, "vm1")  # its object table was never made: no crash, an error
    built = Index(users={}, profiles=[], roles=[], **ok)
    with pytest.raises(RuntimeError, match="built once"):
        built.__init__(users={}, profiles=[], roles=[], **ok)
    with pytest.raises(ValueError, match="no profile 0"):
        built.remember("a", 0, 1.0)
    with pytest.raises(TypeError, match="remember"):
        built.remember(b"a", -1, 1.0)
