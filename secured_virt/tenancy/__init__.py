"""Tenancy: management realms (seed 002's "multi-tenant orchestration").

A realm is a tenant on one host: its members (users, and Unix groups resolved through NSS),
its admins, its VMs (each recorded with its realm in the domain's metadata at define), its
storage (a libvirt directory pool), the ACM labels its VMs may carry, the operations root
allows it, and its quotas.  Root declares realms in one trusted file (``realms``: ``model``);
the checks that keep every request inside one realm (``check``) run before RBAC; realm admins
change their own realm through svirtd in per-realm files merged with root's UA/PA at load
(``realmfiles``), in the spirit of ARBAC97 with the realm as the range.

Without a realms file there is one implicit root realm and everything behaves as before.

May import ``rbac`` (groups, the policy builder) and the shared helpers (``fsutil``) and
nothing else of ``secured_virt``: the service hands it what it needs (the catalogue's names,
a VM's metadata as attributes, a domain's disk paths).
The package itself imports nothing.
"""
