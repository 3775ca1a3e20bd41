"""policy.mcs: MCS category sets and dominance, unique category pairs, and the emulated open
hook.  The properties of issue 15: pairs are unique among running VMs (also with realm
categories), a realm category never reaches another realm's VM, and no VM ever opens another
VM's image, whatever sequence of starts, stops and opens happens."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from policy import mcs
from policy.mcs import CategoryPair, Level, McsDenied, McsMediator, PairAllocator


# -- categories, levels, dominance ----------------------------------------------------------
def test_category_syntax_round_trips():
    cats = mcs.parse_categories("c0.c3,c7,c9,c10")
    assert cats == {0, 1, 2, 3, 7, 9, 10}
    assert mcs.format_categories(cats) == "c0.c3,c7,c9,c10"
    assert str(Level.parse("s0:c392,c662")) == "s0:c392,c662"
    assert str(Level.parse("s0")) == "s0"
    assert Level.parse("s0-s0:c0.c1023").categories == frozenset(range(1024))


@pytest.mark.parametrize("bad", ["c1024", "x3", "c3.c1", "c", "c-1", "c00000001"])
def test_bad_categories_are_refused_with_the_reason(bad):
    with pytest.raises(mcs.McsError) as exc:
        mcs.parse_categories(bad)
    assert bad in str(exc.value) or "range" in str(exc.value)


def test_levels_need_the_one_sensitivity():
    with pytest.raises(mcs.McsError, match="single sensitivity s0"):
        Level.parse("s1:c1")
    with pytest.raises(mcs.McsError, match="no categories"):
        Level.parse("s0:")


@pytest.mark.parametrize(
    "obj, accessible",
    [
        ("s0", True),
        ("s0:c1", True),
        ("s0:c2", True),
        ("s0:c1,c2", True),
        ("s0:c1,c3", False),
        ("s0:c3", False),
    ],
)
def test_dominance_of_a_vm_at_c1_c2(obj, accessible):
    """The reference's table (tenancy-frontends §2) for a VM at s0:c1,c2."""
    assert Level.parse("s0:c1,c2").dominates(Level.parse(obj)) is accessible


def test_pairs_are_ordered_distinct_and_in_range():
    assert CategoryPair.of(845, 12) == CategoryPair(12, 845)
    assert str(CategoryPair.parse("s0:c845,c12")) == "c12,c845"
    for bad in ("c3,c3", "c1", "c1,c2,c3", "c0.c1,c5", "c1,c1024"):
        with pytest.raises(mcs.McsError):
            CategoryPair.parse(bad)
    with pytest.raises(mcs.McsError):
        CategoryPair(5, 5)
    with pytest.raises(mcs.McsError):
        CategoryPair(7, 3)


@given(
    st.sets(st.integers(0, 1023), min_size=2, max_size=2),
    st.sets(st.integers(0, 1023), min_size=2, max_size=2),
)
def test_two_distinct_pairs_never_dominate_each_other(a, b):
    """Why pairs: any two distinct pairs are mutually inaccessible."""
    pa, pb = CategoryPair.of(*a), CategoryPair.of(*b)
    assert pa.level.dominates(pb.level) == (pa == pb)


# -- the allocator ----------------------------------------------------------------------------
def test_allocation_is_unique_until_the_space_is_full_then_says_so():
    alloc = PairAllocator(categories=8, rng=random.Random(1))
    got = {alloc.allocate(f"vm{i}") for i in range(28)}  # C(8, 2)
    assert len(got) == 28
    with pytest.raises(mcs.CategoriesExhausted, match="all 28 category pairs are held"):
        alloc.allocate("one-more")
    freed = alloc.release("vm3")
    assert alloc.allocate("one-more") == freed


def test_a_key_keeps_its_pair():
    alloc = PairAllocator()
    p = alloc.allocate("uuid-1")
    assert alloc.allocate("uuid-1") == p
    assert alloc.pair_of("uuid-1") == p and alloc.holder_of(p) == "uuid-1"


def test_realm_vms_carry_their_realm_category_and_nobody_else_does():
    realms = {"acme": 1023, "globex": 1022}
    alloc = PairAllocator(realm_categories=realms, rng=random.Random(7))
    for i in range(300):
        assert 1023 in alloc.allocate(f"a{i}", "acme").categories
        p = alloc.allocate(f"g{i}", "globex")
        assert 1022 in p.categories and 1023 not in p.categories
        q = alloc.allocate(f"n{i}")
        assert not q.categories & {1022, 1023}


def test_a_full_realm_is_reported_not_spun_on():
    alloc = PairAllocator(categories=10, realm_categories={"acme": 9})
    for i in range(9):  # (9, c0) .. (9, c8)
        alloc.allocate(f"a{i}", "acme")
    with pytest.raises(mcs.CategoriesExhausted, match=r"realm 'acme'.*c9"):
        alloc.allocate("a9", "acme")
    alloc.allocate("other")  # the open space is not affected
    freed = alloc.release("a4")
    assert alloc.allocate("a9", "acme") == freed


def test_two_realms_cannot_share_a_category():
    with pytest.raises(mcs.McsError, match="both claim category c5"):
        PairAllocator(realm_categories={"a": 5, "b": 5})


def test_rebuild_keeps_every_pair_taken_and_names_what_is_wrong():
    alloc = PairAllocator(categories=8, realm_categories={"acme": 7})
    problems = alloc.rebuild(
        [
            ("vm-a", CategoryPair(1, 2), None),
            ("vm-b", CategoryPair(1, 2), None),  # the same pair twice
            ("vm-c", CategoryPair(3, 7), None),  # acme's category outside acme
            ("vm-d", CategoryPair(3, 4), "acme"),  # an acme VM without acme's category
        ]
    )
    text = "\n".join(problems)
    assert "vm-b and vm-a hold the same category pair c1,c2" in text
    assert "vm-c (no realm) holds c7, the category of realm 'acme'" in text
    assert "vm-d belongs to realm 'acme' but its pair c3,c4 lacks the realm's category c7" in text
    alloc.release("vm-a")  # vm-b still holds c1,c2: it must stay taken
    assert alloc.holder_of(CategoryPair(1, 2)) == "vm-b"
    got = {alloc.allocate(f"new{i}") for i in range(19)}  # C(7, 2) = 21 open pairs, 2 held
    assert CategoryPair(1, 2) not in got and CategoryPair(3, 4) not in got
    with pytest.raises(mcs.CategoriesExhausted):
        alloc.allocate("one-too-many")


def test_a_realm_category_is_one_no_running_vm_holds():
    held = [CategoryPair(5, 1023), CategoryPair(1, 1022)]
    assert mcs.choose_realm_category({"acme": 1021}, held) == 1020
    with pytest.raises(mcs.CategoriesExhausted):
        mcs.choose_realm_category({}, [CategoryPair.of(i, (i + 1) % 8) for i in range(8)], 8)


class AllocatorMachine(RuleBasedStateMachine):
    """Random allocate/release sequences in a small space with two realm categories: the pairs
    held are always distinct, each realm VM holds its category and no VM holds another's."""

    REALMS = {"r1": 11, "r2": 10}

    def __init__(self):
        super().__init__()
        self.alloc = PairAllocator(
            categories=12, realm_categories=self.REALMS, rng=random.Random(0)
        )
        self.held: dict[str, tuple[CategoryPair, str | None]] = {}
        self.n = 0

    @rule(realm=st.sampled_from([None, "r1", "r2"]))
    def allocate(self, realm):
        key = f"k{self.n}"
        self.n += 1
        try:
            pair = self.alloc.allocate(key, realm)
        except mcs.CategoriesExhausted:
            used = sum(1 for _p, r in self.held.values() if r == realm)
            assert used == self.alloc.capacity(realm)
            return
        self.held[key] = (pair, realm)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data):
        key = data.draw(st.sampled_from(sorted(self.held)))
        assert self.alloc.release(key) == self.held.pop(key)[0]

    @invariant()
    def unique_and_separated(self):
        pairs = [p for p, _r in self.held.values()]
        assert len(set(pairs)) == len(pairs)
        for pair, realm in self.held.values():
            for r, cat in self.REALMS.items():
                assert (cat in pair.categories) == (r == realm)


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(max_examples=60, stateful_step_count=80, deadline=None)


# -- the emulated hooks ----------------------------------------------------------------------
def test_a_vm_opens_its_own_image_and_shared_content_only():
    m = McsMediator()
    m.start("a", CategoryPair(1, 2), images=["/img/a"], readonly=["/img/iso"])
    m.start("b", CategoryPair(3, 4), images=["/img/b"], readonly=["/img/iso"])
    assert m.open("a", "/img/a", write=True)
    assert m.open("a", "/img/iso")
    assert not m.open("a", "/img/iso", write=True)
    v = m.open("a", "/img/b")
    assert not v and "does not dominate /img/b at s0:c3,c4" in v.reason
    assert not m.open("a", "/img/unused")  # at rest: type enforcement, not MCS
    m.stop("b")
    assert not m.open("a", "/img/b")  # back at rest, still not a's
    assert str(m.label_of("/img/b")) == "virt_image_t:s0"


@pytest.mark.parametrize("how", ["images", "readonly", "shareable"])
def test_naming_a_running_vms_image_is_refused(how):
    """B cannot get A's image relabelled by naming it in any role (libvirt: "already in
    use")."""
    m = McsMediator()
    m.start("a", CategoryPair(1, 2), images=["/img/a"])
    with pytest.raises(McsDenied, match="in use by a"):
        m.start("b", CategoryPair(3, 4), **{how: ["/img/a"]})
    assert m.process_level("b") is None
    assert m.label_of("/img/a").level == CategoryPair(1, 2).level


class HostMachine(RuleBasedStateMachine):
    """VMs start with pairs from the allocator, private images and a shared ISO, and stop, in
    any order; VMs try to open any image at any time.  Property: a VM opens an image only if it
    is its own private image or a shared read-only one (read), never another VM's."""

    IMAGES = [f"/img/{i}" for i in range(8)]

    def __init__(self):
        super().__init__()
        self.m = McsMediator()
        self.alloc = PairAllocator(categories=16, rng=random.Random(3))
        self.owner: dict[str, str] = {}  # private image -> running VM
        self.running: dict[str, list[str]] = {}

    @rule(
        vm=st.sampled_from([f"vm{i}" for i in range(6)]),
        imgs=st.sets(st.sampled_from(IMAGES), max_size=3),
        ro=st.booleans(),
    )
    def start(self, vm, imgs, ro):
        if vm in self.running:
            return
        pair = self.alloc.allocate(vm)
        try:
            self.m.start(vm, pair, images=sorted(imgs), readonly=["/iso"] if ro else [])
        except McsDenied:
            self.alloc.release(vm)
            assert any(i in self.owner for i in imgs)  # refused only for an image in use
            return
        assert not any(i in self.owner for i in imgs)
        self.running[vm] = sorted(imgs)
        for i in imgs:
            self.owner[i] = vm

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def stop(self, data):
        vm = data.draw(st.sampled_from(sorted(self.running)))
        self.m.stop(vm)
        self.alloc.release(vm)
        for i in self.running.pop(vm):
            del self.owner[i]

    @precondition(lambda self: self.running)
    @rule(data=st.data(), path=st.sampled_from([*IMAGES, "/iso"]), write=st.booleans())
    def open(self, data, path, write):
        vm = data.draw(st.sampled_from(sorted(self.running)))
        v = self.m.open(vm, path, write)
        if path == "/iso":
            shared = self.m.label_of("/iso").type == mcs.CONTENT_TYPE
            assert bool(v) == (shared and not write)
        else:
            assert bool(v) == (self.owner.get(path) == vm), v.reason


TestHostMachine = HostMachine.TestCase
TestHostMachine.settings = settings(
    max_examples=80,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
