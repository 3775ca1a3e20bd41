"""Nothing crosses: the realm of the caller, of the VM and of every resource a request names.

Why before RBAC, and why even root's requests pass part of it: a grant is written by people
and can be wrong (a pattern that happens to match another tenant's VM, a role given to the
wrong group); the realm check does not depend on any grant, so a misconfigured UA/PA, or a
realm admin's file, still cannot reach across.  Root may act in every realm (root could run
virsh anyway), but not *mix* them: a VM of one realm never gets another realm's label or
image, whoever asks.

Membership: a user is a member of a realm when root's realms file names them or one of their
Unix groups (NSS, through rbac.groups with its short cache, so ``gpasswd`` takes effect
without a restart), as member or admin, or when the realm admin added them (per-realm file).
A user in no realm belongs to the implicit root realm, and may act only on VMs of no realm.

The commonest request -- a member acting on a VM of their realm, an operation their realm
allows -- is also answered together with RBAC in one call of rbac's C index
(:meth:`Tenancy.partitions`: the realms compiled into rbac's generic partitions, each user's
realms told to it from :meth:`Tenancy.realms_of`, with the same deadline as its cache here).
Every other request (another realm's VM, an operation the realm does not allow, a user whose
realms are not cached, root, labels, resources, host operations) runs :meth:`refusal` as
before, for its wording; tests/tenancy/test_realm_index.py holds the two to the same answers.

The VM's realm is what its metadata says (recorded at define); a VM without one belongs to the
realm whose claim (``<VM name|pattern>``) covers its name, else to the root realm.  A name two
realms' patterns both cover is refused to everyone until root settles it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from rbac.groups import RESOLVER, GroupResolver

from .model import Realm, RealmSet

ROOT_REALM = ""


def shown(realm: str) -> str:
    return f"realm '{realm}'" if realm else "the root realm (no realm)"


class RealmConflict(Exception):
    """A VM two realms claim: nobody may act on it until root fixes the realms file."""


class Tenancy:
    """The realms in force and the questions the service asks about them."""

    def __init__(self, realms: RealmSet | None = None, resolver: GroupResolver | None = None):
        self.realms = realms if realms is not None else RealmSet()
        self.groups = resolver if resolver is not None else RESOLVER
        #: realm -> (users, groups) the realm's admin added (per-realm files)
        self._extra: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        #: user -> (deadline, their realms): as fresh as the group answers they come from
        self._mine: dict[str, tuple[float, tuple[str, ...], RealmSet]] = {}
        #: (realms, operation names, rbac Partitions) compiled by partitions(); it holds
        #: what _mine holds for those realms, each entry until the same deadline
        self._parts = None

    @property
    def extra(self) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
        return self._extra

    @extra.setter
    def extra(self, value) -> None:
        self._extra = value
        self._forget_mine()

    def _forget_mine(self) -> None:
        self._mine = {}
        if self._parts is not None:
            self._parts[2].forget()

    def __bool__(self) -> bool:
        return bool(self.realms)

    # -- who ------------------------------------------------------------------------------------
    def _in(self, user: str, users: Iterable[str], groups: Iterable[str]) -> bool:
        if user in users:
            return True
        groups = tuple(groups)
        return bool(groups) and bool(self.groups.member_of(user, groups))

    def is_member(self, user: str, realm: Realm) -> bool:
        eu, eg = self.extra.get(realm.name, ((), ()))
        # each set looked up as it is (a realm of 5k users: no 5k-name tuple per question)
        if user in realm.users or user in realm.admin_users or user in eu:
            return True
        return self._in(user, (), (*realm.groups, *realm.admin_groups, *eg))

    def is_admin(self, user: str, realm: Realm) -> bool:
        return self._in(user, realm.admin_users, realm.admin_groups)

    def realms_of(self, user: str) -> tuple[str, ...]:
        """The realms ``user`` is a member of, cached as long as the group answers are
        (and told to the compiled partitions, valid until the same instant)."""
        now = time.monotonic()
        hit = self._mine.get(user)
        if hit is not None and hit[0] > now and hit[2] is self.realms:
            return hit[1]
        mine = tuple(sorted(r.name for r in self.realms.realms.values() if self.is_member(user, r)))
        if len(self._mine) > 20000:
            self._forget_mine()
        until = now + min(self.groups.ttl, 5.0)
        self._mine[user] = (until, mine, self.realms)
        parts = self._parts
        if parts is not None and parts[0] is self.realms and type(user) is str:
            parts[2].tell(user, frozenset(mine), until)
        return mine

    def partitions(self, names: Mapping[int, str]):
        """The realms as rbac partitions (rbac.engine.Partitions) for
        ``RbacPolicy.decide_in``: a VM's partition is its ``realm`` attribute, a user's the
        realms :meth:`realms_of` found (told as it finds them, until the same deadline), a
        realm's allowed operations the ids whose name (``names``: id -> operation name, the
        catalogue's) it lists.  decide_in() then answers exactly what ``refusal`` + decide()
        answer when refusal passes, *provided* the caller checks the conditions refusal has
        beyond those: not root, a VM (not a host operation), no label given, and the VM's
        realm in its attrs -- or, when they name none, no realm's claim covering it (a VM
        of the root realm).  Recompiled when the realms change."""
        cached = self._parts
        if cached is not None and cached[0] is self.realms and cached[1] is names:
            return cached[2]
        from rbac.engine import Partitions

        restrict = {
            r.name: frozenset(i for i, n in names.items() if n in r.operations)
            for r in self.realms.realms.values()
            if r.operations
        }
        parts = Partitions("realm", restrict)
        now = time.monotonic()
        for user, (until, mine, realms) in self._mine.items():
            if realms is self.realms and until > now and type(user) is str:
                parts.tell(user, frozenset(mine), until)
        self._parts = (self.realms, names, parts)
        return parts

    def admin_of(self, user: str) -> tuple[str, ...]:
        return tuple(sorted(r.name for r in self.realms.realms.values() if self.is_admin(user, r)))

    # -- what -----------------------------------------------------------------------------------
    def vm_realm(self, name: str, attrs=None) -> str:
        """The realm of VM ``name`` (``attrs``: its metadata as the gate sees it)."""
        recorded = attrs.get("realm") if attrs else None
        if recorded:
            return recorded
        claimed = self.realms.claim(name)
        if len(claimed) > 1:
            raise RealmConflict(
                f"VM '{name}' is claimed by realms {', '.join(repr(c) for c in claimed)} "
                "(their <VM> patterns overlap); root must settle it in the realms file"
            )
        return claimed[0] if claimed else ROOT_REALM

    def realm_for_new(self, user: str, name: str, *, root: bool) -> str:
        """The realm a VM defined now by ``user`` goes into: the realm claiming its name, else
        the caller's only realm (root's, or a user in no realm: the root realm)."""
        claimed = self.realms.claim(name)
        if len(claimed) > 1:
            raise RealmConflict(
                f"VM '{name}' is claimed by realms {', '.join(repr(c) for c in claimed)}; "
                "root must settle it in the realms file"
            )
        if claimed:
            return claimed[0]
        if root:
            return ROOT_REALM
        mine = self.realms_of(user)
        if len(mine) > 1:
            raise RealmConflict(
                f"you are a member of realms {', '.join(mine)}, and no realm claims the name "
                f"'{name}': ask root to add it to one realm's <VM> claims"
            )
        return mine[0] if mine else ROOT_REALM

    def label_owner(self, label: str) -> str | None:
        for r in self.realms.realms.values():
            if label in r.labels:
                return r.name
        return None

    # -- the checks -----------------------------------------------------------------------------
    def refusal(
        self,
        user: str,
        *,
        root: bool,
        op_name: str,
        op_scope: str,
        vm: str | None,
        attrs=None,
        label: str | None = None,
    ) -> str | None:
        """Why this request crosses realms (None: it does not).  ``vm`` None: a host
        operation; ``label``: a label the request gives the VM."""
        if not self.realms:
            return None
        if vm is None:
            if root:
                return None
            mine = self.realms_of(user)
            if not mine or any(op_name in self.realms.realms[r].operations for r in mine):
                return None
            return (
                f"'{op_name}' acts on the host, outside any realm; you are a member of "
                f"{', '.join(shown(r) for r in mine)}, and root allows realm members only the "
                "host operations listed in their realm"
            )
        try:
            vr = self.vm_realm(vm, attrs)
        except RealmConflict as exc:
            return str(exc)
        if label is not None:
            why = self.label_refusal(vr, label, vm)
            if why:
                return why
        if root:
            return None
        mine = self.realms_of(user)
        if vr not in mine and not (vr == ROOT_REALM and not mine):
            yours = ", ".join(shown(r) for r in mine) if mine else shown(ROOT_REALM)
            return f"VM '{vm}' belongs to {shown(vr)}; you are a member of {yours}"
        realm = self.realms.get(vr) if vr else None
        if realm is not None and realm.operations and op_name not in realm.operations:
            return (
                f"root allows {shown(vr)} only {', '.join(sorted(realm.operations))}; "
                f"'{op_name}' is not among them"
            )
        return None

    def pool_realm(self, pool: str) -> str:
        """The realm whose ``<Storage pool=...>`` is ``pool`` (a pool of no realm: root's)."""
        for r in self.realms.realms.values():
            if r.pool == pool:
                return r.name
        return ROOT_REALM

    def pool_refusal(self, user: str, *, root: bool, op_name: str, pool: str) -> str | None:
        """Why a volume request on ``pool`` crosses realms (None: it does not).  A member
        works only in the pools of their realms, a user of no realm only in pools of no
        realm; root in every pool."""
        if not self.realms or root:
            return None
        pr = self.pool_realm(pool)
        mine = self.realms_of(user)
        if pr not in mine and not (pr == ROOT_REALM and not mine):
            yours = ", ".join(shown(r) for r in mine) if mine else shown(ROOT_REALM)
            owner = f"storage of {shown(pr)}" if pr else "a pool of no realm"
            return f"pool '{pool}' is the {owner}; you are a member of {yours}"
        realm = self.realms.get(pr) if pr else None
        if realm is not None and realm.operations and op_name not in realm.operations:
            return (
                f"root allows {shown(pr)} only {', '.join(sorted(realm.operations))}; "
                f"'{op_name}' is not among them"
            )
        return None

    def pools_refusal(self, vm: str, vr: str, pools) -> str | None:
        """A ``<disk type='volume'>`` names its pool: it must be the VM's realm's pool (a VM
        of no realm: a pool of no realm), whoever asks."""
        for pool, vol in pools:
            pr = self.pool_realm(pool)
            if pr != vr:
                where = f"the storage of {shown(pr)}" if pr else "a pool of no realm"
                return (
                    f"volume '{vol}' of pool '{pool}' is in {where}; VM '{vm}' belongs to "
                    f"{shown(vr)} and may not use it"
                )
        return None

    def label_refusal(self, vr: str, label: str, vm: str) -> str | None:
        owner = self.label_owner(label)
        if vr:
            realm = self.realms.get(vr)
            if realm is None or label not in realm.labels:
                allowed = ", ".join(sorted(realm.labels)) if realm and realm.labels else "none"
                return (
                    f"label '{label}' is not one of {shown(vr)}'s labels ({allowed}); "
                    f"VM '{vm}' may not carry it"
                )
            return None
        if owner is not None:
            return (
                f"label '{label}' belongs to {shown(owner)}; VM '{vm}' of the root realm may "
                "not carry it"
            )
        return None

    def resources_refusal(self, vm: str, vr: str, paths: Iterable[str]) -> str | None:
        """Every image a VM of realm ``vr`` names must be in that realm's storage (and an
        image in a realm's storage is used by that realm's VMs only)."""
        if not self.realms:
            return None
        realm = self.realms.get(vr) if vr else None
        for path in paths:
            owner = self.realms.realm_of_path(path)
            if owner == vr and (owner or not vr):
                continue
            if owner is None and realm is not None:
                where = realm.path or "(none: root gave it no <Storage>)"
                return (
                    f"'{path}' is outside {shown(vr)}'s storage {where}; VM '{vm}' may use "
                    "only its realm's images"
                )
            if owner is not None and owner != vr:
                return (
                    f"'{path}' is an image of {shown(owner)}; VM '{vm}' belongs to "
                    f"{shown(vr)} and may not use it"
                )
        return None

    def resource_label_refusal(
        self, user: str, *, root: bool, resource: str, label: str | None, current: str | None
    ) -> str | None:
        """setlabel-resource: a resource (an image) carries only labels of its own realm, and
        a realm member labels only resources of their realm (root: any, but never mixing)."""
        if not self.realms:
            return None
        path = resource.split(":", 1)[1] if resource[:5] in ("file:", "phy:/") else resource
        owner = self.realms.realm_of_path(path) or ROOT_REALM
        if not root:
            mine = self.realms_of(user)
            if owner not in mine and not (owner == ROOT_REALM and not mine):
                yours = ", ".join(shown(r) for r in mine) if mine else shown(ROOT_REALM)
                return f"resource {resource} belongs to {shown(owner)}; you are a member of {yours}"
        realm = self.realms.get(owner) if owner else None
        for what, lab in (("label", label), ("current label", current if not root else None)):
            if not lab:
                continue
            if realm is not None and lab not in realm.labels:
                allowed = ", ".join(sorted(realm.labels)) or "none"
                return (
                    f"{what} '{lab}' is not one of {shown(owner)}'s labels ({allowed}); "
                    f"resource {resource} of that realm may not carry it"
                )
            lab_owner = self.label_owner(lab)
            if realm is None and lab_owner is not None:
                return (
                    f"{what} '{lab}' belongs to {shown(lab_owner)}; resource {resource} of the "
                    "root realm may not carry it"
                )
        return None
