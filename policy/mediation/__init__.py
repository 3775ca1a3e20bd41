"""The emulated ACM hypervisor hooks, one responsibility per module; ``policy.mediator`` is the
facade that puts them together as :class:`~policy.mediator.Mediator`.

Layers, each building on the one before (a class per layer, the state held by the first):

``state``
    the active compiled policy, running domains, Chinese Wall counts, channels, counters and
    caches, and label resolution (:class:`~policy.mediation.state.MediatorState`);
``sharing``
    Simple Type Enforcement: VM and resource, event channels, grant mappings;
``lifecycle``
    domain create and destroy: authorization, Chinese Wall, the resources a domain uses;
``change``
    relabel, policy update and rebuild, computed aside and committed whole;
``replay``
    the pure recount of a set of running domains that ``change`` uses.

Nothing is imported here, so that importing one layer does not import the others.
"""
