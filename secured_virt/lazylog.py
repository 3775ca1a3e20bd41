"""A module's logger that imports ``logging`` when something is first logged.

Why: ``logging`` brings traceback, string and textwrap with it, several milliseconds of every
root svirsh in direct mode (issue 18), and the modules on its path log only when something goes
wrong.  ``log = lazy_logger("secured_virt.x")`` at the top of a module keeps the usual
``log.warning(...)`` calls; the real ``logging.getLogger(name)`` is looked up at the first
attribute asked, and kept.  Imports nothing of ours, so every room may use it (SHARED in
tests/architecture/test_rooms.py).
"""

from __future__ import annotations

__all__ = ["lazy_logger"]


class _LazyLogger:
    """Stands for ``logging.getLogger(name)``; every attribute is the real logger's."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str):
        self._name = name
        self._logger = None

    def __getattr__(self, attr: str):
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger(self._name)
        return getattr(logger, attr)


def lazy_logger(name: str) -> _LazyLogger:
    """The logger ``name``, looked up at its first use (see the module docstring)."""
    return _LazyLogger(name)
