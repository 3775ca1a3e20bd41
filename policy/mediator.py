"""The mediation module: Xen 3.3's ACM hypervisor hooks, emulated in-process.

Why emulate: on KVM/QEMU (and in tests) there is no hypervisor ACM to ask, so the front-end asks
this object, under exactly the rules Xen's hooks applied:

* Chinese Wall (primary).  Per CHWALL type, how many running domains hold it
  (``running_types``) and how many running domains conflict with it (``conflict_aggregate``).
  A domain may start only if none of its types has a non-zero aggregate; starting raises the
  aggregate of every *other* type of each conflict set it touches; stopping undoes exactly that.
  Save/restore and migration count as stop/start.
* Simple Type Enforcement (secondary).  Two domains may share (event channels, grant mappings)
  and a domain may use a resource only if their labels have an STE type in common.  Creating a
  domain also needs ``authorization``: Domain-0's STE types must include the new domain's (xend
  checked this before every domain create).  Permitted domain pairs are cached per domain
  (8 entries, as Xen's ACM_TE_CACHE_SIZE) and the cache counts hits.
* Policy update and relabel are all-or-nothing: the new state is computed aside (renames
  applied, every running domain replayed, every channel and attached resource re-checked) and
  only swapped in when nothing breaks.

Labels are always resolved by (policy name, label name) (seed 001); ssidrefs are local numbers
computed from the active compiled policy and only reported.  One lock guards all state.

Layout (``policy/mediation/``), each layer building on the one before:

* ``state``      the state, its caches and counters, label resolution (``MediatorState``);
* ``sharing``    STE: resources, event channels, grant tables (``SharingHooks``);
* ``lifecycle``  domain create/destroy: authorization, Chinese Wall (``DomainHooks``);
* ``change``     relabel, policy update, rebuild (``PolicyChanges``, ``UpdateResult``);
* ``replay``     the pure recount of running domains the changes use.

This module is the facade: :class:`Mediator` adds the read-only views, and the names code has
always imported from ``policy.mediator`` are here.
"""

from __future__ import annotations

from collections.abc import Hashable

from .compiled import CompiledPolicy
from .mediation.change import PolicyChanges, UpdateResult
from .mediation.state import COUNTER_NAMES, DOM0, RunningDomain

__all__ = ["COUNTER_NAMES", "DOM0", "Mediator", "RunningDomain", "UpdateResult"]


class Mediator(PolicyChanges):
    """The emulated ACM hooks over one active compiled policy.  See the module docstring.

    ``dom0``: the key of the management domain (Domain-0), running from the start with the
    bootstrap label (or ``dom0_label``); pass ``dom0=None`` for a host with no such domain, in
    which case ``authorization`` is checked against the bootstrap label.
    """

    # ------------------------------------------------------------- views
    def running(self) -> dict[Hashable, RunningDomain]:
        """Running domains (Domain-0 included): key -> RunningDomain (label, ssidref, domid)."""
        with self._lock:
            return {k: self._running_entry(d) for k, d in self._domains.items()}

    def label_of(self, dom_key: Hashable) -> str | None:
        """``ACM:<policy>:<label>`` of a running domain, or None if it is not running."""
        with self._lock:
            d = self._domains.get(dom_key)
            return self._running_entry(d).display if d else None

    @property
    def compiled(self) -> CompiledPolicy:
        return self._compiled

    @property
    def policy_name(self) -> str:
        return self._compiled.name

    @property
    def dom0(self) -> Hashable | None:
        return self._dom0

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the decision counters (evaluations, denials, cache hits ...)."""
        with self._lock:
            return dict(self._c)

    def chwall_state(self) -> dict[str, dict[str, int]]:
        """Per CHWALL type: ``running_types`` and ``conflict_aggregate`` counts (non-zero)."""
        with self._lock:
            names = self._compiled.chwall_type_order
            return {
                "running_types": {names[i]: n for i, n in enumerate(self._running_types) if n},
                "conflict_aggregate": {names[i]: n for i, n in enumerate(self._aggregate) if n},
            }
