"""Which host files a domain's disks reach, to tell when two domains would share an image.

Why: the disk fence (``disks``) keeps a user's images inside the shared ``disk_dirs``, but
every tenant's images live there, so the fence alone let any tenant define, attach or boot
another tenant's image (or build a qcow2 overlay on top of it).  The service compares what a
caller's domain would reach with what every other domain reaches, and refuses an overlap with
a domain of another owner unless the caller holds rights on that domain.  This module only
answers "which files"; who may share is the service's question (it needs RBAC and the list of
domains, which this room may not touch).

A domain's files are each file/block/dir disk source (read with ``sources.disk_source``,
symlinks resolved) and, for qcow2 images, the backing chain as far as it can be read.  For
other domains the chain is followed without the fence's limits (root may have defined them
with anything); a header that cannot be read ends that chain where it is.
"""

from __future__ import annotations

import os

from . import qcow2, sources

_MAX_CHAIN = 16


def files_used(root) -> set[str]:
    """Every host file the disks of parsed domain XML ``root`` reach (resolved paths)."""
    out: set[str] = set()
    for disk in root.iterfind("devices/disk"):
        src = sources.disk_source(disk)
        if src is None or src[0] not in ("file", "block", "dir") or not src[1].startswith("/"):
            continue
        drv = disk.find("driver")
        fmt = drv.get("type") if drv is not None else None
        out.update(_chain(src[1], fmt))
    return out


def _chain(path: str, fmt: str | None) -> list[str]:
    found = [os.path.realpath(path)]
    named = path
    for _depth in range(_MAX_CHAIN):
        if fmt != "qcow2":
            break
        try:
            header = qcow2.read_header(found[-1])
        except qcow2.Qcow2Error:
            break
        if header is None or header.backing_file is None:
            break
        backing = header.backing_file
        if ":" in backing.split("/", 1)[0]:
            break
        if not backing.startswith("/"):
            backing = os.path.join(os.path.dirname(named), backing)
        found.append(os.path.realpath(backing))
        named, fmt = backing, header.backing_format
    return found
