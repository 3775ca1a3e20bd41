"""Fresh authentication for operations that demand it (per role in PA, or per operation in
the config): the *caller's* own password through PAM, with a sudo-like credential cache.

Like sudo, root is never asked (also when acting ``--as`` someone), the password is asked on the
caller's terminal (svirtd relays the prompt to the client; it never travels on a command line),
three tries are allowed, and PAM account management (expired or locked accounts) is part of the
check.  A successful authentication is cached per uid and terminal for ``auth_timeout_minutes``.
"""

from __future__ import annotations

import contextlib

from . import pamauth
from .credcache import CredCache, CredCacheError

TRIES = 3


class Authenticator:
    def __init__(self, service: str, cache: CredCache | None):
        self.service = service
        self.cache = cache

    @classmethod
    def from_config(cls, config) -> Authenticator:
        return cls(config.pam_service, CredCache.from_config(config))

    def __call__(self, ident, interaction, op) -> tuple[bool, str]:
        if ident.uid == 0:
            return True, "root is not asked for a password"
        if self.cache is not None:
            try:
                if self.cache.check(ident):
                    return True, "cached authentication"
            except CredCacheError:
                pass  # an unusable cache means: ask again
        if interaction is None:
            return False, f"operation '{op.name}' requires authentication and no terminal is there"
        last = "authentication failed"
        prompt = f"[secured-virt] password for {ident.user}: "
        for attempt in range(TRIES):
            # like sudo: a wrong password is followed by "Sorry, try again." and a new prompt
            pw = interaction.ask_password(("Sorry, try again.\n" if attempt else "") + prompt)
            if pw is None and attempt:  # input ended after wrong password(s): say that
                return False, f"{last}; {attempt} incorrect password attempt(s)"
            if pw is None:
                return False, (
                    f"operation '{op.name}' requires your password; none was given "
                    "(run svirsh from a terminal, or pipe the password to its standard input)"
                )
            res = pamauth.authenticate(ident.user, pw, self.service)
            if res.ok:
                if self.cache is not None:
                    with contextlib.suppress(CredCacheError):
                        self.cache.update(ident)
                return True, "authenticated"
            last = f"PAM: {res.reason} (code {res.code})"
            if res.code not in (pamauth.PAM_AUTH_ERR,):
                break  # account expired/locked, unknown user...: asking again cannot help
        return False, last
