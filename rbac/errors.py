"""Errors raised by rbac.

Every problem with a policy is a :class:`PolicyError` that knows the file and line it came from,
because the person who must fix it is root editing ``ua.xml``/``pa.xml``: "pa.xml:14: operation id
99 is not in the catalogue (1-63)" says where to look and what to change.  Loading collects every
problem it can find and raises one ``PolicyError`` carrying all of them in ``errors``, so a
broken file is fixed in one round trip rather than one error at a time.
"""

from __future__ import annotations

from collections.abc import Iterable


class RbacError(Exception):
    """Base class of everything rbac raises on purpose."""


class PolicyError(RbacError):
    """An invalid, unsafe or unreadable policy (or policy file).

    ``file`` and ``line`` say where (either may be ``None`` when unknown), ``message`` says what
    is wrong.  ``errors`` lists every individual problem (a single error lists itself).
    ``str()`` is one line per problem, each like ``"pa.xml:14: ..."``.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.errors: tuple[PolicyError, ...] = (self,)
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        if self.file is not None and self.line:
            return f"{self.file}:{self.line}: {self.message}"
        if self.file is not None and not self.message.startswith(self.file):
            return f"{self.file}: {self.message}"
        return self.message

    def __str__(self) -> str:
        return "\n".join(e._one_line() for e in self.errors)

    @classmethod
    def collect(cls, errors: Iterable[PolicyError]) -> PolicyError:
        """One error standing for several: the first gives file/line/message, str() shows all."""
        errs = sorted(errors, key=lambda e: (e.file or "", e.line or 0))
        if not errs:
            raise ValueError("collect() needs at least one error")
        if len(errs) == 1:
            return errs[0]
        first = errs[0]
        combined = cls(first.message, first.file, first.line)
        combined.errors = tuple(e for err in errs for e in err.errors)
        combined.args = (str(combined),)
        return combined


class UntrustedFileError(PolicyError):
    """A file that must be trusted (root-owned, not writable by others, regular) is not."""


class DsdViolation(PolicyError):
    """Activating roles together would break a dynamic separation-of-duty set.

    ``file``/``line`` point at the set's definition; ``set_name`` and ``roles`` say which set
    and which of the session's roles collide.
    """

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        *,
        set_name: str = "",
        roles: tuple[str, ...] = (),
    ):
        self.set_name = set_name
        self.roles = roles
        super().__init__(message, file, line)


class SessionError(RbacError):
    """A session request that the policy cannot honour (unknown user, role not authorized)."""


class UnknownName(RbacError, KeyError):
    """A review function was asked about a user or role the policy does not define."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
