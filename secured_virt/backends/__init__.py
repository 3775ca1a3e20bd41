"""Hypervisor backends (libvirt, Xen xl) behind one small interface; see base.py.

Only the interface is imported here: the libvirt bindings load when a libvirt backend is
opened, so clients that just talk to svirtd never import them.
"""

from .base import (
    ACTIVE_STATES,
    STATE_WORDS,
    Backend,
    BackendError,
    DomainInfo,
    NoSuchDomain,
    SnapshotInfo,
)
from .factory import BACKEND_KINDS, open_backend

__all__ = [
    "ACTIVE_STATES",
    "BACKEND_KINDS",
    "STATE_WORDS",
    "Backend",
    "BackendError",
    "DomainInfo",
    "NoSuchDomain",
    "SnapshotInfo",
    "open_backend",
]
