"""Canonical resource names, as xend's ``unify_resname`` made them.

Why: one resource must have one label, however it is spelled.  ``phy:sda`` and
``phy:/dev/sda`` are the same disk; ``file:img`` depends on the current directory unless made
absolute.  Symlinks are resolved so a link cannot carry a different label than its target.
"""

from __future__ import annotations

import os

from ..errors import Xserr, XsmError

_PREFIXES = ("phy", "file", "tap", "vlan")


def canonical_resource(name: str) -> str:
    """``phy:sda`` -> ``phy:/dev/sda``; ``file:x.img`` -> ``file:/abs/x.img``;
    ``tap:qcow:x`` -> ``tap:qcow:/abs/x``; ``vlan:12``; a bare path -> ``file:<abs path>``."""
    if not isinstance(name, str) or not name.strip() or "\0" in name or "\n" in name:
        raise XsmError(Xserr.BAD_RESOURCE_FORMAT, f"{name!r} is not a resource name")
    name = name.strip()
    kind, sep, rest = name.partition(":")
    if not sep:
        if name.startswith(("/", ".")):
            return "file:" + os.path.realpath(name)
        raise XsmError(
            Xserr.BAD_RESOURCE_FORMAT,
            f"{name!r}: write a resource as phy:<device>, file:<path>, tap:<type>:<path> or "
            "vlan:<id>",
        )
    if kind == "phy":
        if not rest:
            raise XsmError(Xserr.BAD_RESOURCE_FORMAT, f"{name!r} names no device")
        dev = rest if rest.startswith("/") else "/dev/" + rest
        return "phy:" + os.path.realpath(dev)
    if kind == "file":
        if not rest:
            raise XsmError(Xserr.BAD_RESOURCE_FORMAT, f"{name!r} names no file")
        return "file:" + os.path.realpath(rest)
    if kind == "tap":
        sub, sep2, path = rest.partition(":")
        if not sep2 or not sub or not path:
            raise XsmError(Xserr.BAD_RESOURCE_FORMAT, f"{name!r}: expected tap:<type>:<path>")
        return f"tap:{sub}:" + os.path.realpath(path)
    if kind == "vlan":
        if not (rest.isascii() and rest.isdigit()) or not 0 < int(rest) < 4095:
            raise XsmError(Xserr.BAD_RESOURCE_FORMAT, f"{name!r}: a vlan id is 1..4094")
        return f"vlan:{int(rest)}"
    raise XsmError(
        Xserr.BAD_RESOURCE_FORMAT,
        f"{name!r}: unknown resource type {kind!r} (use one of {', '.join(_PREFIXES)})",
    )
