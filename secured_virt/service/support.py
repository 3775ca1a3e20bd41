"""Small pieces the command mixins share: one-call actions, lazily read domain attributes,
sizes, label display."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

from secured_virt.confinement import vmmeta
from secured_virt.requests import EXIT_FAILED

from .errors import UserError

_SIZE = re.compile(r"^\s*(\d+)\s*([KkMmGgTt]i?[Bb]?|[Bb])?\s*$")


def parse_size_kib(text: str) -> int:
    """virsh-style sizes: a plain number is KiB; K/M/G/T suffixes (binary units)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"invalid size '{text}': use a number with an optional K, M, G suffix")
    n, unit = int(m.group(1)), (m.group(2) or "K").upper()[0]
    factor = {"B": 1 / 1024, "K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}[unit]
    return int(n * factor)


def _say(message: str, call: Callable[[], object]) -> Callable[..., dict]:
    """An action that makes one backend call, then reports virsh's message for it."""

    def act(*_info):
        call()
        return {"message": message}

    return act


def _missing(name: str) -> Callable[[], dict]:
    def act():
        raise UserError(f"failed to get domain '{name}'", EXIT_FAILED)

    return act


class _LazyAttrs(Mapping):
    """A domain's RBAC attributes (owner, label), read from its metadata on first use."""

    __slots__ = ("_fetch", "_meta", "_name")

    def __init__(self, fetch, name: str):
        self._fetch, self._name, self._meta = fetch, name, None

    @property
    def meta(self) -> vmmeta.VmMeta:
        if self._meta is None:
            self._meta = self._fetch(self._name)
        return self._meta

    def __getitem__(self, key):
        return self.meta.attrs()[key]

    def __iter__(self):
        return iter(self.meta.attrs())

    def __len__(self) -> int:
        return len(self.meta.attrs())


def _size(text) -> int:
    try:
        return parse_size_kib(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _acm_display(m: vmmeta.VmMeta) -> str | None:
    if not m.label:
        return None
    return f"ACM:{m.label_policy}:{m.label}"


def _with_flags(backend, name: str, info):
    """``info`` with its persistent and autostart flags, asked now if the row was resolved
    without them (LibvirtBackend.resolve says why)."""
    if info.persistent is not None and info.autostart is not None:
        return info
    return dataclasses.replace(
        info,
        persistent=backend.is_persistent(name) if info.persistent is None else info.persistent,
        autostart=backend.get_autostart(name) if info.autostart is None else info.autostart,
    )
