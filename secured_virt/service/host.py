"""Commands on the host object rather than a VM: forgetting cached credentials, and the shared
path of every host operation (``_host_op``: gate on the host object, then act).
"""

from __future__ import annotations

from secured_virt.access.rolesession import ActiveRoles
from secured_virt.requests import EXIT_OK, Reply


class HostCommands:
    """Mixed into ``Service`` (see ``facade``), which provides _run, _gated, _resolve, gate
    and backend."""

    def _cmd_forget_credentials(self, ident, args, interaction):
        """svirsh -k through svirtd: forget the *caller's* cached authentication and end the
        roles active in their login sessions."""
        from secured_virt.access.credcache import CredCache

        CredCache.from_config(self.config).forget(ident.uid)
        ActiveRoles.from_config(self.config).forget(ident.uid)
        return Reply(EXIT_OK, data={"message": ""})

    def _host_op(self, ident, op_name, interaction, action, performs=()):
        """Gate on the host object through the mediation table (``_gated``)."""
        return self._gated(
            ident, self._op(op_name), self.host_target(), interaction, action, performs=performs
        )
