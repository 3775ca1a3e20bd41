"""The use-case layer: one method per command, shared by every front-end.

``Service.handle(identity, request)`` is the only way a front-end (svirsh's direct mode,
svirtd, svirt-admin) acts on a VM or the host, so none of them can decide differently from the
others.  The façade (``facade.Service``) owns what every command shares: resolving and pinning
the target, the gate, performing and auditing; the commands themselves are grouped by
responsibility into mixins (lifecycle, devices, storage, labels, host, sHype policy).

May import every other room of ``secured_virt`` except the front-ends (``cli``, ``daemon``),
plus ``rbac`` and ``policy``.  Front-ends import it; it imports none of them.
"""

from .errors import NullInteraction, UserError
from .facade import Service

__all__ = ["NullInteraction", "Service", "UserError"]
