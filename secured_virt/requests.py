"""The request/reply contract shared by svirsh, the use-case layer and svirtd.

A ``Request`` is what the user asked for, already parsed from argv: a command name (virsh's
name, e.g. ``start``) and its arguments as plain JSON-able values.  It never carries an identity:
who is asking is learned from the kernel (the real uid, or SO_PEERCRED in svirtd), and
``as_user`` is only a *wish* that the gate honours for root alone.

A ``Reply`` carries an exit code (DESIGN.md: 0 ok, 1 hypervisor failure, 2 usage, 3 denied,
4 bad policy/config), structured ``data`` for rendering (tables, JSON) on the client side, and a
human ``message`` for errors and denials.  Keeping rendering on the client means svirsh prints
the same bytes in direct mode and through the daemon.

This module is imported by the thin client, so it must stay tiny: standard library only.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_BAD_POLICY = 4


class Request:
    # plain class, not a dataclass: importing dataclasses (and inspect) costs the client more
    # than its whole request round trip
    __slots__ = ("args", "as_user", "command")

    def __init__(
        self, command: str, args: dict[str, object] | None = None, as_user: str | None = None
    ):
        self.command = command
        self.args = {} if args is None else args
        self.as_user = as_user

    def __repr__(self) -> str:
        return f"Request(command={self.command!r}, args={self.args!r}, as_user={self.as_user!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Request) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, object]:
        return {"command": self.command, "args": self.args, "as_user": self.as_user}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Request:
        if not isinstance(d, dict):
            raise ValueError("request must be a JSON object")
        command = d.get("command")
        args = d.get("args", {})
        as_user = d.get("as_user")
        if not isinstance(command, str) or not command:
            raise ValueError("request.command must be a non-empty string")
        if not isinstance(args, dict):
            raise ValueError("request.args must be an object")
        if as_user is not None and not isinstance(as_user, str):
            raise ValueError("request.as_user must be a string or null")
        return cls(command=command, args=args, as_user=as_user)


class Reply:
    __slots__ = ("check", "data", "message", "status")

    def __init__(
        self,
        status: int = EXIT_OK,
        data: object = None,
        message: str = "",
        check: str | None = None,
    ):
        self.status = status
        self.data = data
        self.message = message
        #: for denials: which check refused ("rbac", "acm", "identity", "pam", "audit", ...)
        self.check = check

    def __repr__(self) -> str:
        return (
            f"Reply(status={self.status!r}, data={self.data!r}, message={self.message!r}, "
            f"check={self.check!r})"
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, Reply) and self.to_dict() == other.to_dict()

    @property
    def ok(self) -> bool:
        return self.status == EXIT_OK

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "data": self.data,
            "message": self.message,
            "check": self.check,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Reply:
        return cls(
            status=int(d.get("status", EXIT_FAILED)),
            data=d.get("data"),
            message=str(d.get("message", "")),
            check=d.get("check"),
        )
