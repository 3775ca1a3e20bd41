"""What a command can fail with before reaching the hypervisor, and the silent interaction.

Kept apart from the façade so every command mixin can raise ``UserError`` without importing the
``Service`` class that mixes them in.
"""

from __future__ import annotations

from secured_virt.requests import EXIT_USAGE


class UserError(Exception):
    """A request that cannot be carried out as asked (exit 2, or the given status)."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


class NullInteraction:
    tty = None

    def ask_password(self, prompt: str) -> str | None:
        return None

    def progress(self, done: int, total: int) -> None:
        pass
