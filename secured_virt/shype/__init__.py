"""sHype/ACM on real domains: the mandatory half of the gate.

``policy/`` knows the sHype policy and emulates the hypervisor's mediation hooks; this room
joins it to real domains: labels kept in the domains' metadata, the mediation state rebuilt from
what the hypervisor really runs, and the host-wide lock that makes check-then-instantiate
atomic (``enforcer``); the sVirt category pair of each running VM, unique on the host and
rebuilt the same way under its own lock (``categories``, over ``policy.mcs``).

May import ``policy``, ``secured_virt.backends`` (the interface) and
``secured_virt.confinement`` (domain metadata); never RBAC, the service or a front-end.  This
package's own import is free: it only names the operations the ACM mediates, so the service can
ask without loading any policy code when ACM is off.
"""

#: operations that bring a domain into existence on this host: the Chinese Wall create hook
INSTANTIATING = frozenset({"start", "create", "restore", "snapshot-revert"})
