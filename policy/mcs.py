"""MCS categories for sVirt: category sets, dominance, unique category pairs, emulated hooks.

sVirt gives every running VM's QEMU, and the images it uses, a pair of MCS categories so that
one QEMU cannot open another VM's resources even if the management stack is wrong.  Why a
*pair* (the reference, tenancy-frontends §2): under MCS a process may open an object only if the
process's category set dominates (is a superset of) the object's.  Two distinct pairs never
contain each other, so two VMs with distinct pairs are mutually inaccessible, while an object
with no category (``s0``) is reachable by all: that is the shared read-only level.  A single
category per VM would not do: an object at ``s0:cN`` would be open to every pair containing cN.

A management *realm* may get a dedicated category r (seed 002: "unique category to represent
each management realm"): its VMs then get pairs (r, c_j), and a realm-wide object at ``s0:cR``
is reachable by that realm's VMs only.  That holds only if no VM of another realm ever holds r,
so reserved realm categories are excluded from every other draw, and a realm is only given a
category no running VM holds (:func:`choose_realm_category`).

This module is pure: no files, no locks, no libvirt.  ``secured_virt.shype.categories`` keeps
the host-wide state (rebuilt from what really runs, under a lock) and feeds it to
:class:`PairAllocator`; :class:`McsMediator` emulates the kernel hooks with MCS semantics so the
property "no VM ever opens another VM's image" can be tested without SELinux.

Like the rest of ``policy``, it knows nothing of users or roles: a realm here is only a name
that owns a category.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

#: categories c0..c1023: refpolicy's default MCS_CATS, and libvirt's default range
MCS_CATS = 1024
#: MCS policies have a single sensitivity
SENSITIVITY = "s0"


class McsError(ValueError):
    """A category, level or pair that is not well-formed; the message says which and why."""


class CategoriesExhausted(McsError):
    """Every pair the request could take is held by a running VM."""


# -- category sets and levels ---------------------------------------------------------------


def _category(token: str, categories: int) -> int:
    if not token.startswith("c") or not token[1:].isdigit() or len(token) > 6:
        raise McsError(f"{token!r} is not a category: expected c0 .. c{categories - 1}")
    value = int(token[1:])
    if value >= categories:
        raise McsError(f"category {token} is out of range: c0 .. c{categories - 1}")
    return value


def parse_categories(text: str, categories: int = MCS_CATS) -> frozenset[int]:
    """``"c0.c3,c7"`` -> {0, 1, 2, 3, 7}: SELinux's syntax (``.`` is an inclusive range)."""
    text = text.strip()
    if not text:
        return frozenset()
    out: set[int] = set()
    for part in text.split(","):
        lo, dot, hi = part.strip().partition(".")
        a = _category(lo, categories)
        if not dot:
            out.add(a)
            continue
        b = _category(hi, categories)
        if b < a:
            raise McsError(f"range {part.strip()!r} runs backwards: write c{b}.c{a}")
        out.update(range(a, b + 1))
    return frozenset(out)


def format_categories(cats: Iterable[int]) -> str:
    """{0, 1, 2, 3, 7} -> ``"c0.c3,c7"``; runs of three or more are written as ranges."""
    ordered = sorted(set(cats))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"c{ordered[i]}.c{ordered[j]}")
        else:
            parts.extend(f"c{c}" for c in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class Level:
    """An MCS level: the single sensitivity ``s0`` and a set of categories."""

    categories: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str, categories: int = MCS_CATS) -> Level:
        """``"s0"`` or ``"s0:c1,c2"``; a range ``s0-s0:c0.c1023`` is read by its high level,
        which is what the MCS constraints compare (refpolicy ``policy/mcs``: h1 dom h2)."""
        high = text.strip().rpartition("-")[2]
        sens, colon, cats = high.partition(":")
        if sens != SENSITIVITY:
            raise McsError(f"level {text!r}: MCS has the single sensitivity {SENSITIVITY}")
        if colon and not cats:
            raise McsError(f"level {text!r} has a ':' but no categories")
        return cls(parse_categories(cats, categories))

    def dominates(self, other: Level) -> bool:
        return dominates(self.categories, other.categories)

    def __str__(self) -> str:
        cats = format_categories(self.categories)
        return f"{SENSITIVITY}:{cats}" if cats else SENSITIVITY


def dominates(subject: Iterable[int], obj: Iterable[int]) -> bool:
    """MCS dominance with one sensitivity: the subject's categories include the object's."""
    return frozenset(subject) >= frozenset(obj)


@dataclass(frozen=True, slots=True, order=True)
class CategoryPair:
    """Two distinct categories, low < high: the label of one running VM and its images."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not (
            isinstance(self.low, int)
            and isinstance(self.high, int)
            and 0 <= self.low < self.high < MCS_CATS
        ):
            raise McsError(
                f"a category pair needs 0 <= low < high <= {MCS_CATS - 1}, "
                f"got ({self.low!r}, {self.high!r})"
            )

    @classmethod
    def of(cls, a: int, b: int) -> CategoryPair:
        """The pair of two categories in either order."""
        return cls(a, b) if a < b else cls(b, a)

    @classmethod
    def parse(cls, text: str) -> CategoryPair:
        """``"c12,c845"`` (also ``"s0:c12,c845"``, as libvirt writes levels)."""
        raw = text.strip()
        if raw.startswith(SENSITIVITY + ":"):
            raw = raw[len(SENSITIVITY) + 1 :]
        parts = raw.split(",")
        if len(parts) != 2 or "." in raw:
            raise McsError(f"{text!r} is not a category pair: expected cI,cJ (e.g. c12,c845)")
        a, b = (_category(p.strip(), MCS_CATS) for p in parts)
        if a == b:
            raise McsError(f"{text!r} names one category twice: a pair needs two")
        return cls.of(a, b)

    @property
    def categories(self) -> frozenset[int]:
        return frozenset((self.low, self.high))

    @property
    def level(self) -> Level:
        return Level(self.categories)

    def __str__(self) -> str:
        return f"c{self.low},c{self.high}"


# -- the allocator ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a pair: an opaque key (the service uses the VM's UUID) and its realm."""

    key: str
    pair: CategoryPair
    realm: str | None = None


class PairAllocator:
    """Unique category pairs among the VMs that run, optionally one fixed category per realm.

    State is only what :meth:`rebuild` is told (what really runs) plus what :meth:`allocate`
    and :meth:`release` changed since; the host side rebuilds it under its lock before every
    allocation, so this object never has to be trusted across processes.

    Drawing: a VM without a realm category draws two distinct categories from the open ones
    (every category no realm reserves) at random, like libvirt, and retries on a taken pair; the
    space holds C(m, 2) pairs (523,776 with no realm), so a retry is rare, and after 64 misses a
    scan from a random start finds a free pair or proves there is none.  A realm's VMs share one
    fixed category, so their space is only the ~1,000 pairs (r, c_j): random retry would slow
    down as the realm fills and could not tell "full" from "unlucky", so each realm keeps the
    list of its free second categories and draws from it directly (O(1) at any occupancy).
    """

    RETRIES = 64

    def __init__(
        self,
        categories: int = MCS_CATS,
        realm_categories: Mapping[str, int] | None = None,
        rng: random.Random | None = None,
    ):
        if not 8 <= categories <= MCS_CATS:
            raise McsError(f"category range must hold 8 .. {MCS_CATS} categories")
        self.categories = categories
        self._rng = rng or random.Random(os.urandom(16))
        self._holder: dict[CategoryPair, str] = {}
        self._held: dict[str, Holder] = {}
        #: pairs that rebuild found held twice: the other holders, so a release keeps it taken
        self._shared: dict[CategoryPair, list[str]] = {}
        self.set_realm_categories(realm_categories or {})

    # -- configuration ---------------------------------------------------------------------
    def set_realm_categories(self, mapping: Mapping[str, int]) -> None:
        """Which realm owns which category; the categories leave every other draw."""
        owner: dict[int, str] = {}
        for realm, cat in mapping.items():
            if not isinstance(cat, int) or not 0 <= cat < self.categories:
                raise McsError(
                    f"realm {realm!r}: category {cat!r} is out of range c0 .. "
                    f"c{self.categories - 1}"
                )
            if cat in owner:
                raise McsError(
                    f"realms {owner[cat]!r} and {realm!r} both claim category c{cat}: each "
                    "realm needs a category of its own"
                )
            owner[cat] = realm
        if self.categories - len(owner) < 2:
            raise McsError("realm categories leave fewer than two open categories")
        self._realm_cat = dict(mapping)
        self._cat_owner = owner
        self._open = [c for c in range(self.categories) if c not in owner]
        self._rows: dict[str, tuple[list[int], dict[int, int]]] = {}

    @property
    def realm_categories(self) -> dict[str, int]:
        return dict(self._realm_cat)

    # -- state -----------------------------------------------------------------------------
    def rebuild(self, holders: Iterable[Holder | tuple]) -> list[str]:
        """Replace the state with what really runs; every pair stays taken, even a wrong
        one (fail closed), and each irregularity comes back as a sentence."""
        self._holder.clear()
        self._held.clear()
        self._rows.clear()
        self._shared.clear()
        problems: list[str] = []
        for h in holders:
            if not isinstance(h, Holder):
                h = Holder(*h)
            if h.key in self._held:
                problems.append(f"{h.key} is listed twice ({self._held[h.key].pair} and {h.pair})")
                continue
            if h.pair.high >= self.categories:
                problems.append(
                    f"{h.key} holds {h.pair}, outside this host's range c0 .. "
                    f"c{self.categories - 1}"
                )
            other = self._holder.get(h.pair)
            if other is not None:
                problems.append(
                    f"{h.key} and {other} hold the same category pair {h.pair}: they are not "
                    "separated from each other; restart one of them"
                )
                self._shared.setdefault(h.pair, []).append(h.key)
            else:
                self._holder[h.pair] = h.key
            problems.extend(self._realm_problems(h))
            self._held[h.key] = h
        return problems

    def _realm_problems(self, h: Holder) -> list[str]:
        out = []
        for cat in (h.pair.low, h.pair.high):
            owner = self._cat_owner.get(cat)
            if owner is not None and owner != h.realm:
                whose = f"realm {h.realm!r}" if h.realm else "no realm"
                out.append(
                    f"{h.key} ({whose}) holds c{cat}, the category of realm {owner!r}: it can "
                    f"open that realm's shared resources; restart it to get a new pair"
                )
        mine = self._realm_cat.get(h.realm) if h.realm else None
        if mine is not None and mine not in h.pair.categories:
            out.append(
                f"{h.key} belongs to realm {h.realm!r} but its pair {h.pair} lacks the realm's "
                f"category c{mine}"
            )
        return out

    def pair_of(self, key: str) -> CategoryPair | None:
        h = self._held.get(key)
        return h.pair if h else None

    def holder_of(self, pair: CategoryPair) -> str | None:
        return self._holder.get(pair)

    def holders(self) -> list[Holder]:
        return list(self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    def capacity(self, realm: str | None = None) -> int:
        """How many pairs a VM of ``realm`` (None: of no realm) could ever hold here."""
        m = len(self._open)
        return m if self._realm_cat.get(realm) is not None else m * (m - 1) // 2

    # -- allocation ------------------------------------------------------------------------
    def allocate(self, key: str, realm: str | None = None) -> CategoryPair:
        """A pair no other key holds; the key's own if it already holds one."""
        held = self._held.get(key)
        if held is not None:
            return held.pair
        cat = self._realm_cat.get(realm) if realm is not None else None
        pair = self._draw_open() if cat is None else self._draw_row(realm, cat)
        self._holder[pair] = key
        self._held[key] = Holder(key, pair, realm)
        return pair

    def release(self, key: str) -> CategoryPair | None:
        """Give the key's pair back; None if it held none."""
        h = self._held.pop(key, None)
        if h is None:
            return None
        others = self._shared.get(h.pair)
        if others:  # still held by the VM it was wrongly shared with: stays taken
            if key in others:
                others.remove(key)
            elif self._holder.get(h.pair) == key:
                self._holder[h.pair] = others.pop()
            if not others:
                del self._shared[h.pair]
            return h.pair
        if self._holder.get(h.pair) == key:
            del self._holder[h.pair]
            for cat, other in ((h.pair.low, h.pair.high), (h.pair.high, h.pair.low)):
                owner = self._cat_owner.get(cat)
                row = self._rows.get(owner) if owner is not None else None
                if row is not None and other not in self._cat_owner:
                    free, pos = row
                    pos[other] = len(free)
                    free.append(other)
        return h.pair

    def _draw_open(self) -> CategoryPair:
        opened, taken = self._open, self._holder
        m = len(opened)
        rnd = self._rng.random
        for _ in range(self.RETRIES):
            a = int(rnd() * m)
            b = int(rnd() * (m - 1))
            if b >= a:
                b += 1
            a, b = opened[a], opened[b]
            pair = CategoryPair(a, b) if a < b else CategoryPair(b, a)
            if pair not in taken:
                return pair
        for pair in self._scan(int(rnd() * m)):
            if pair not in taken:
                return pair
        raise CategoriesExhausted(
            f"all {m * (m - 1) // 2} category pairs are held by running VMs: stop one first"
        )

    def _scan(self, start: int) -> Iterator[CategoryPair]:
        opened = self._open
        m = len(opened)
        for k in range(m):
            i = (start + k) % m
            for j in range(i + 1, m):
                yield CategoryPair(opened[i], opened[j])

    def _draw_row(self, realm: str, cat: int) -> CategoryPair:
        row = self._rows.get(realm)
        if row is None:
            taken = self._holder
            free = [c for c in self._open if CategoryPair.of(cat, c) not in taken]
            row = self._rows[realm] = (free, {c: i for i, c in enumerate(free)})
        free, pos = row
        if not free:
            raise CategoriesExhausted(
                f"realm {realm!r}: all {len(self._open)} pairs with its category c{cat} are "
                "held by running VMs of the realm: stop one first"
            )
        k = int(self._rng.random() * len(free))
        other = free[k]
        last = free.pop()
        if last != other:
            free[k] = last
            pos[last] = k
        del pos[other]
        return CategoryPair.of(cat, other)


class NaiveAllocator:
    """The peer for the benchmark: libvirt's way (draw two categories, discard equal draws,
    retry while the pair is taken), over the same open categories, with a retry cap so a
    full space fails instead of spinning."""

    def __init__(self, categories: int = MCS_CATS, realm_categories=None, max_tries=100_000):
        self._rng = random.Random(os.urandom(16))
        self._reserved = set((realm_categories or {}).values())
        self._realm_cat = dict(realm_categories or {})
        self._open = [c for c in range(categories) if c not in self._reserved]
        self._taken: dict[CategoryPair, str] = {}
        self._held: dict[str, CategoryPair] = {}
        self.max_tries = max_tries

    def allocate(self, key: str, realm: str | None = None) -> CategoryPair:
        cat = self._realm_cat.get(realm)
        for _ in range(self.max_tries):
            a = self._rng.choice(self._open)
            b = self._rng.choice(self._open) if cat is None else cat
            if a == b:
                continue
            pair = CategoryPair.of(a, b)
            if pair not in self._taken:
                self._taken[pair] = key
                self._held[key] = pair
                return pair
        raise CategoriesExhausted(f"no free pair found in {self.max_tries} draws")

    def release(self, key: str) -> None:
        pair = self._held.pop(key, None)
        if pair is not None:
            del self._taken[pair]


def choose_realm_category(
    realm_categories: Mapping[str, int],
    held: Iterable[CategoryPair],
    categories: int = MCS_CATS,
) -> int:
    """A category for a new realm: one no realm owns and no running VM holds.

    Why not any unowned category: a VM that already holds it could open the new realm's
    shared resources at ``s0:cR``.  The highest such category is chosen, so the choice is
    reproducible (the same host state gives the same answer) and realm categories sit apart
    from the low numbers people read first.
    """
    busy = set(realm_categories.values())
    for p in held:
        busy.update((p.low, p.high))
    if categories - len(realm_categories) - 1 >= 2:  # VMs still need two open categories
        for cat in range(categories - 1, -1, -1):
            if cat not in busy:
                return cat
    raise CategoriesExhausted(
        "no category is free for a new realm: every one is owned by a realm or held by a running VM"
    )


# -- emulated mediation hooks ----------------------------------------------------------------

#: the process type of every confined QEMU; it carries refpolicy's mcs_constrained_type
PROCESS_TYPE = "svirt_t"
#: a VM's private image while the VM runs (object level = the VM's pair)
IMAGE_TYPE = "svirt_image_t"
#: a shared read-only image (no categories, read only)
CONTENT_TYPE = "virt_content_t"
#: an image no VM uses: no svirt process may open it (type enforcement, not MCS)
REST_TYPE = "virt_image_t"


@dataclass(frozen=True, slots=True)
class ObjectLabel:
    type: str
    level: Level = Level()

    def __str__(self) -> str:
        return f"{self.type}:{self.level}"


REST = ObjectLabel(REST_TYPE)
CONTENT = ObjectLabel(CONTENT_TYPE)
SHARED = ObjectLabel(IMAGE_TYPE)  # <shareable/>: read-write for all, no categories


@dataclass(frozen=True, slots=True)
class OpenVerdict:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


class McsDenied(Exception):
    """A start the emulated hooks refuse; the message says what and why."""


class McsMediator:
    """The kernel's side of sVirt, emulated: process and object labels, and the open hook.

    ``start`` labels a VM's process with its pair and its images the way libvirt's SELinux
    driver does (private images get the pair, ``readonly`` ones the shared read-only content
    label, ``shareable`` ones the shared label with no category), and refuses, as libvirt does
    with "Setting different SELinux label on %s which is already in use", to relabel an image
    another running VM uses under a different label — otherwise a VM could name another's image
    as read-only and have it relabelled to ``s0`` under its owner.  ``stop`` returns unused
    images to the rest label.  ``open`` is the hook: type enforcement first (svirt_t opens only
    svirt_image_t, and virt_content_t read-only), then MCS dominance.
    """

    def __init__(self) -> None:
        self._proc: dict[str, Level] = {}
        self._obj: dict[str, ObjectLabel] = {}
        self._users: dict[str, set[str]] = {}
        self._uses: dict[str, list[str]] = {}

    def label_of(self, path: str) -> ObjectLabel:
        return self._obj.get(path, REST)

    def process_level(self, vm: str) -> Level | None:
        return self._proc.get(vm)

    def start(
        self,
        vm: str,
        pair: CategoryPair,
        images: Iterable[str] = (),
        readonly: Iterable[str] = (),
        shareable: Iterable[str] = (),
    ) -> None:
        if vm in self._proc:
            raise McsDenied(f"{vm} is already running")
        wanted: dict[str, ObjectLabel] = {}
        for paths, label in (
            (images, ObjectLabel(IMAGE_TYPE, pair.level)),
            (readonly, CONTENT),
            (shareable, SHARED),
        ):
            for p in paths:
                if p in wanted and wanted[p] != label:
                    raise McsDenied(f"{vm} names {p} twice with different uses")
                wanted[p] = label
        for p, label in wanted.items():
            users = self._users.get(p)
            if users and self._obj.get(p) != label:
                raise McsDenied(
                    f"{vm} may not start: {p} is in use by {', '.join(sorted(users))} as "
                    f"{self._obj[p]} and would have to become {label}"
                )
        self._proc[vm] = pair.level
        self._uses[vm] = list(wanted)
        for p, label in wanted.items():
            self._obj[p] = label
            self._users.setdefault(p, set()).add(vm)

    def stop(self, vm: str) -> None:
        self._proc.pop(vm, None)
        for p in self._uses.pop(vm, ()):
            users = self._users.get(p, set())
            users.discard(vm)
            if not users:
                self._users.pop(p, None)
                self._obj.pop(p, None)  # back to the rest label

    def open(self, vm: str, path: str, write: bool = False) -> OpenVerdict:
        level = self._proc.get(vm)
        if level is None:
            return OpenVerdict(False, f"{vm} is not running")
        obj = self.label_of(path)
        if obj.type == REST_TYPE:
            return OpenVerdict(False, f"{PROCESS_TYPE} may not open {path} ({obj}): no VM uses it")
        if obj.type == CONTENT_TYPE and write:
            return OpenVerdict(False, f"{path} is shared read-only ({obj})")
        if obj.type not in (IMAGE_TYPE, CONTENT_TYPE):
            return OpenVerdict(False, f"{PROCESS_TYPE} may not open {path} ({obj})")
        if not level.dominates(obj.level):
            return OpenVerdict(
                False,
                f"{vm} at {level} does not dominate {path} at {obj.level}: it is another VM's",
            )
        return OpenVerdict(True, f"{vm} at {level} dominates {path} ({obj})")
